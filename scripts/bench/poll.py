"""Measure conditional manifest polls against a bare Flask endpoint on the same server stack.

Starts, on free loopback ports, four servers with the control plane's gunicorn settings:

- the real control plane (`tether server`) on SQLite, set up over its REST API with a model of
  two versions, an environment whose desired state runs one beside the other, and an enrolled
  agent;
- the same control plane on PostgreSQL (a throwaway server in a temp dir, migrated with
  `tether server migrate`), set up the same way;
- a bare Flask view returning a constant JSON body as long as that agent's manifest;
- a bare WSGI callable (no Flask) returning the same bytes: the ceiling.

Then drives each with concurrent kept-alive clients, in interleaved rounds, and prints the
throughputs, the ratio of 304 polls to the bare Flask view (target >= 0.7), the latency of one
client polling on a kept-alive connection (target p99 < 2 ms), and the CPU of a 304 poll on
PostgreSQL (the server's process group plus the database's processes: the postmaster and its
children) over one on SQLite (the server's group), per round (target <= 1.5). Every 304 poll
checks the agent's token and looks the revision up; nothing is cached across requests. Takes
about three minutes with the defaults and ends every process it started.

    PYTHONPATH=$PWD .venv/bin/python scripts/bench/poll.py [--seconds 3] [--rounds 3] \
        [--no-postgresql] [--check]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from subprocess import Popen

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _apps import PATH  # found through the sys.path entry just above
from _load import (  # also puts the repository on sys.path, for scripts.* below
    LOAD_TOOLS,
    Latency,
    LoadResult,
    Servers,
    Target,
    choose_load_tool,
    drive,
    free_port,
    group_cpu_seconds,
    latency,
    load_tool,
    machine,
    probe,
    python,
    servers,
)

from common.config import load_settings
from control_plane.settings import ControlPlaneSettings
from scripts.cluster.postgres import LocalPostgres, migrate, postgres_bin
from scripts.procfs import tree_usage

APPS = Path(__file__).resolve().parent / "_apps.py"
CONNECTIONS = (16, 64)
WARMUP_SECONDS = 1.0
LATENCY_REQUESTS = 3000
RATIO_TARGET = 0.7
P99_TARGET_MS = 2.0
POSTGRES_CPU_TARGET = 1.5  # PostgreSQL (server + database) / SQLite (server), per 304 poll
ENVIRONMENT = "bench"
MODEL = "bench-model"


@dataclass(frozen=True)
class Cell:
    """One timed run: the load result, the server's CPU time and the database's over it."""

    load: LoadResult
    cpu_seconds: float
    database_cpu_seconds: float = 0.0

    def _per_request(self, seconds: float) -> float:
        return 1e6 * seconds / self.load.requests if self.load.requests else float("nan")

    @property
    def cpu_us_per_request(self) -> float:
        """The server's process group, per request."""
        return self._per_request(self.cpu_seconds)

    @property
    def database_us_per_request(self) -> float:
        return self._per_request(self.database_cpu_seconds)

    @property
    def total_us_per_request(self) -> float:
        """Server plus database, per request."""
        return self._per_request(self.cpu_seconds + self.database_cpu_seconds)


@dataclass(frozen=True)
class ControlPlane:
    """One running control plane with its fleet set up: its two manifest targets."""

    poll_304: Target
    fetch_200: Target
    process: Popen
    manifest_bytes: int


@dataclass(frozen=True)
class Bench:
    """The targets to drive, the server process behind each, and PostgreSQL's postmaster."""

    manifest_304: Target
    manifest_200: Target
    bare_flask: Target
    bare_wsgi: Target
    process: dict[str, Popen]
    manifest_bytes: int
    postgres_304: Target | None = None
    postgres_200: Target | None = None
    postmaster: int | None = None  # whose process tree is the PostgreSQL targets' database

    def targets(self) -> tuple[Target, ...]:
        sqlite = (self.bare_flask, self.manifest_304, self.manifest_200, self.bare_wsgi)
        if self.postgres_304 is None or self.postgres_200 is None:
            return sqlite
        return (*sqlite, self.postgres_304, self.postgres_200)

    def on_postgres(self, target: Target) -> bool:
        return target in (self.postgres_304, self.postgres_200)


# --- setup --------------------------------------------------------------------------------------


def start_control_plane(
    running: Servers, tmp: Path, name: str, database_url: str | None = None
) -> tuple[str, Popen, str]:
    """Start `tether server` with its default server settings; return URL, process, admin token.

    On PostgreSQL the database is migrated first, as an operator would (replicas never migrate).
    """
    port = free_port()
    data_dir = tmp / name
    command = [python(), "-m", "common", "server", "--data-dir", str(data_dir), "--port", str(port)]
    token = None
    if database_url is not None:
        token = migrate(database_url, data_dir, python())
        command += ["--database-url", database_url]
    process = running.start(name, command, port)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):  # the port opens a moment before the workers answer
        if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
            break
        time.sleep(0.1)
    if token is None:
        token = (data_dir / "admin.token").read_text().strip()
    return url, process, token


def set_up_fleet(url: str, admin_token: str) -> tuple[str, str]:
    """Push a model twice, desire v1 with v2 in shadow, enroll an agent; return its id and token."""
    admin = {"Authorization": f"Bearer {admin_token}"}
    with httpx.Client(base_url=f"{url}/api/v1", headers=admin, timeout=30) as client:
        _ok(client.put(f"/environments/{ENVIRONMENT}", json={}))
        example = [{"alcohol": 13.2, "malic_acid": 1.78, "ash": 2.14, "proline": 1050.0}]
        for _ in range(2):
            metadata = {"format": "joblib", "input_example": example, "metrics": {"accuracy": 0.97}}
            _ok(
                client.post(
                    f"/models/{MODEL}/versions",
                    files={"artifact": ("model.joblib", secrets.token_bytes(4096))},
                    data={"metadata": json.dumps(metadata)},
                )
            )
        _ok(
            client.put(
                f"/environments/{ENVIRONMENT}/desired/{MODEL}", json={"version": 1, "shadow": 2}
            )
        )
        created = _ok(
            client.post("/tokens", json={"role": "enrollment", "environment": ENVIRONMENT})
        )
        enrolled = _ok(
            client.post(
                "/agents/enroll",
                json={"hostname": "bench-host"},
                headers={"Authorization": f"Bearer {created['token']}"},
            )
        )
    return enrolled["agent_id"], enrolled["token"]


def _ok(response: httpx.Response) -> dict:
    if response.status_code not in (200, 201):
        raise RuntimeError(
            f"{response.request.method} {response.request.url}: "
            f"{response.status_code} {response.text}"
        )
    return response.json()


def start_reference(
    running: Servers, tmp: Path, app: str, size: int, settings: ControlPlaneSettings
) -> tuple[Target, Popen]:
    """Start a reference app under ControlPlaneServer with the control plane's workers/threads."""
    port = free_port()
    data_dir = tmp / f"bare-{app}"
    data_dir.mkdir()
    command = [
        python(),
        str(APPS),
        "--app",
        app,
        "--server",
        "tether",
        "--port",
        str(port),
        "--workers",
        str(settings.workers),
        "--threads",
        str(settings.threads),
        "--size",
        str(size),
        "--data-dir",
        str(data_dir),
    ]
    process = running.start(f"bare-{app}", command, port)
    target = Target(f"bare {'Flask' if app == 'flask' else 'WSGI'} ({size} B JSON)", port, PATH)
    status, body, _ = probe(target)
    if status != 200 or len(body) != size:
        raise RuntimeError(f"{target.name}: answered {status} with {len(body)} bytes")
    return target, process


def set_up_control_plane(
    running: Servers, tmp: Path, label: str, database_url: str | None = None
) -> ControlPlane:
    """Start one control plane, set up its fleet, and check its manifest answers 200 then 304."""
    name = "control-plane" if database_url is None else "control-plane-postgresql"
    url, process, admin_token = start_control_plane(running, tmp, name, database_url)
    agent_id, agent_token = set_up_fleet(url, admin_token)
    port = int(url.rsplit(":", 1)[1])
    path = f"/api/v1/agents/{agent_id}/manifest"
    auth = {"Authorization": f"Bearer {agent_token}"}
    fetch_200 = Target(f"{label}manifest 200 (full fetch)", port, path, auth, status=200)
    status, body, headers = probe(fetch_200)
    if status != 200 or "etag" not in headers:
        raise RuntimeError(f"manifest fetch answered {status}: {body[:300]!r}")
    poll_304 = Target(
        f"{label}manifest 304 (If-None-Match)",
        port,
        path,
        {**auth, "If-None-Match": headers["etag"]},
        status=304,
    )
    check_304(poll_304)
    return ControlPlane(poll_304, fetch_200, process, len(body))


def set_up(running: Servers, tmp: Path, postgres: LocalPostgres | None) -> Bench:
    """Start the servers, set up the fleets, and check every target answers as expected."""
    settings = load_settings(ControlPlaneSettings)
    sqlite = set_up_control_plane(running, tmp, "")
    size = sqlite.manifest_bytes
    bare_flask, flask_process = start_reference(running, tmp, "flask", size, settings)
    bare_wsgi, wsgi_process = start_reference(running, tmp, "wsgi", size, settings)
    process = {
        sqlite.poll_304.name: sqlite.process,
        sqlite.fetch_200.name: sqlite.process,
        bare_flask.name: flask_process,
        bare_wsgi.name: wsgi_process,
    }
    bench = Bench(sqlite.poll_304, sqlite.fetch_200, bare_flask, bare_wsgi, process, size)
    if postgres is None:
        return bench
    url = postgres.create_database("tether_bench")
    on_pg = set_up_control_plane(running, tmp, "PG ", url)
    process[on_pg.poll_304.name] = process[on_pg.fetch_200.name] = on_pg.process
    return dataclasses.replace(
        bench,
        postgres_304=on_pg.poll_304,
        postgres_200=on_pg.fetch_200,
        postmaster=postgres.postmaster_pid(),
    )


def check_304(target: Target) -> None:
    """Fail unless a conditional poll answers 304 with no body."""
    status, body, _ = probe(target)
    if status != 304 or body:
        raise RuntimeError(f"conditional poll answered {status} with {len(body)} bytes")


# --- measuring --------------------------------------------------------------------------------


def measure(bench: Bench, target: Target, connections: int, seconds: float) -> Cell:
    """Drive one target and account its server's CPU time (and its database's) over the run."""
    process = bench.process[target.name]
    database = bench.postmaster if bench.on_postgres(target) else None
    before = group_cpu_seconds(process)
    database_before = tree_usage(database)[0] if database else 0.0
    load = drive(target, connections, seconds)
    server = group_cpu_seconds(process) - before
    database_cpu = tree_usage(database)[0] - database_before if database else 0.0
    return Cell(load, server, database_cpu)


def run_rounds(bench: Bench, seconds: float, rounds: int) -> dict[tuple[str, int], list[Cell]]:
    """Drive every target at every concurrency, `rounds` times, interleaved."""
    for target in bench.targets():
        drive(target, 16, WARMUP_SECONDS)
    cells: dict[tuple[str, int], list[Cell]] = {}
    for round_number in range(1, rounds + 1):
        for connections in CONNECTIONS:
            for target in bench.targets():
                cell = measure(bench, target, connections, seconds)
                cells.setdefault((target.name, connections), []).append(cell)
                print(
                    f"  round {round_number}: {target.name:<34} c={connections:<3} "
                    f"{cell.load.rate:8.0f} req/s  errors {cell.load.errors}",
                    file=sys.stderr,
                    flush=True,
                )
    return cells


def latencies(bench: Bench) -> dict[str, Latency]:
    """Time one client's sequential requests to each target on a kept-alive connection."""
    return {target.name: latency(target, LATENCY_REQUESTS) for target in bench.targets()}


# --- reporting --------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ratios(
    cells: dict[tuple[str, int], list[Cell]], bench: Bench, connections: int, *, cpu: bool = False
) -> list[float]:
    """Return, per round, manifest-304 over bare Flask: by throughput, or by CPU per request."""
    polls = cells[(bench.manifest_304.name, connections)]
    bare = cells[(bench.bare_flask.name, connections)]
    pairs = zip(polls, bare, strict=True)
    if cpu:
        return [b.cpu_us_per_request / p.cpu_us_per_request for p, b in pairs]
    return [p.load.rate / b.load.rate for p, b in pairs]


def postgres_ratios(
    cells: dict[tuple[str, int], list[Cell]], bench: Bench, connections: int
) -> list[float]:
    """Return, per round, a 304's CPU on PostgreSQL (server + database) over SQLite (server)."""
    assert bench.postgres_304 is not None
    on_pg = cells[(bench.postgres_304.name, connections)]
    on_sqlite = cells[(bench.manifest_304.name, connections)]
    return [
        pg.total_us_per_request / lite.cpu_us_per_request
        for pg, lite in zip(on_pg, on_sqlite, strict=True)
    ]


def report_postgres(bench: Bench, cells: dict[tuple[str, int], list[Cell]]) -> bool:
    """Print the PostgreSQL over SQLite CPU ratio per round; return whether the target was met."""
    met = True
    for connections in CONNECTIONS:
        each = postgres_ratios(cells, bench, connections)
        ratio = median(each)
        ok = ratio <= POSTGRES_CPU_TARGET
        met &= ok
        rounds = " / ".join(f"{r:.2f}" for r in each)
        print(
            f"CPU per conditional poll, PostgreSQL (server + database) / SQLite (server) at "
            f"{connections} connections: rounds {rounds}; median {ratio:.2f}; "
            f"target <= {POSTGRES_CPU_TARGET}: {'met' if ok else 'MISSED'}"
        )
    return met


def report(
    bench: Bench, cells: dict[tuple[str, int], list[Cell]], timings: dict[str, Latency]
) -> bool:
    """Print the tables and the verdicts; return whether both targets were met."""
    print(
        "\n| endpoint | conns | req/s median | req/s best | req/s each round | errors "
        "| server CPU us/req | database CPU us/req | server + database us/req |"
    )
    print("|---|---:|---:|---:|---|---:|---:|---:|---:|")
    for connections in CONNECTIONS:
        for target in bench.targets():
            runs = cells[(target.name, connections)]
            rates = [cell.load.rate for cell in runs]
            cpu = median([cell.cpu_us_per_request for cell in runs])
            errors = sum(cell.load.errors for cell in runs)
            each = " / ".join(f"{rate:.0f}" for rate in rates)
            database = total = "-"
            if bench.on_postgres(target):
                database = f"{median([cell.database_us_per_request for cell in runs]):,.0f}"
                total = f"{median([cell.total_us_per_request for cell in runs]):,.0f}"
            print(
                f"| {target.name} | {connections} | {median(rates):,.0f} | {max(rates):,.0f} "
                f"| {each} | {errors} | {cpu:,.0f} | {database} | {total} |"
            )
    print("\n| single client, kept-alive | p50 ms | p99 ms | mean ms | requests |")
    print("|---|---:|---:|---:|---:|")
    for name, timing in timings.items():
        print(
            f"| {name} | {timing.p50:.3f} | {timing.p99:.3f} | {timing.mean:.3f} | {timing.count} |"
        )
    print()
    met = True
    for connections in CONNECTIONS:
        by_rate = median(ratios(cells, bench, connections))
        by_cpu = median(ratios(cells, bench, connections, cpu=True))
        ok = by_rate >= RATIO_TARGET
        met &= ok
        print(
            f"ratio manifest-304 / bare Flask at {connections} connections: {by_rate:.2f} "
            f"(by server CPU per request: {by_cpu:.2f}); target >= {RATIO_TARGET}: "
            f"{'met' if ok else 'MISSED'}"
        )
    poll = timings[bench.manifest_304.name]
    ok = poll.p99 < P99_TARGET_MS
    met &= ok
    print(
        f"single-client conditional poll: p50 {poll.p50:.3f} ms, p99 {poll.p99:.3f} ms; "
        f"target < {P99_TARGET_MS} ms: {'met' if ok else 'MISSED'}"
    )
    if bench.postgres_304 is not None:
        met &= report_postgres(bench, cells)
    return met


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="Length of each run.")
    parser.add_argument("--rounds", type=int, default=3, help="Interleaved repetitions.")
    parser.add_argument("--check", action="store_true", help="Exit 1 if a target is missed.")
    parser.add_argument(
        "--no-postgresql",
        dest="postgresql",
        action="store_false",
        help="Leave out the control plane on PostgreSQL.",
    )
    parser.add_argument(
        "--load",
        choices=LOAD_TOOLS,
        default="auto",
        help="Load generator: wrk when installed (auto), or the Python one.",
    )
    args = parser.parse_args()
    choose_load_tool(args.load)
    settings = load_settings(ControlPlaneSettings)
    started = time.monotonic()
    postgres = None
    if args.postgresql and postgres_bin() is None:
        print(
            "note: PostgreSQL is not installed (apt-get install postgresql): measuring SQLite only",
            flush=True,
        )
    elif args.postgresql:
        postgres = LocalPostgres()  # durable, as in production: fsync on
    with (
        tempfile.TemporaryDirectory(prefix="tether-poll-") as tmp,
        postgres or contextlib.nullcontext(),
        servers(Path(tmp)) as running,
    ):
        bench = set_up(running, Path(tmp), postgres)
        print(f"machine: {machine()}")
        print(
            f"load generator: {load_tool()}; server: gunicorn gthread "
            f"{settings.workers} workers x {settings.threads} threads; manifest "
            f"{bench.manifest_bytes} B; {args.seconds:g} s per run, {args.rounds} rounds",
            flush=True,
        )
        cells = run_rounds(bench, args.seconds, args.rounds)
        timings = latencies(bench)
        check_304(bench.manifest_304)  # still a 304: the revision did not move under the load
        if bench.postgres_304 is not None:
            check_304(bench.postgres_304)
    met = report(bench, cells, timings)
    print(f"\n(took {time.monotonic() - started:.0f} s; load average now {os.getloadavg()[0]:.2f})")
    if args.check and not met:
        sys.exit(1)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the servers are already stopped
        sys.exit(130)
