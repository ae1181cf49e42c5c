"""Drive one control plane with a simulated fleet of agents for a bounded time.

Each simulated agent is a real `agent.sync.client.ControlPlaneClient` with its own token and
connection: it enrolls, polls its manifest with `If-None-Match` (a 304 once it has it), sends
heartbeats and batches of shadow reports, each at its own interval with jitter, as real agents
do. Many agents share a process: a small thread pool runs whichever agent's next request is
due, so the generator costs little CPU next to the server it measures.

    python scripts/load/fleet.py --start-server --agents 200 --duration 30 [--backend both]
    python scripts/load/fleet.py --url http://127.0.0.1:8500 --admin-token-file T \\
        --server-pid 1234 --agents 2000 --duration 300 --json

Prints requests/s, errors, p50/p99 latency per endpoint and the server's CPU and memory (its
whole process tree, read from /proc). With --start-server the fleet runs against a server on
SQLite, then on PostgreSQL (a throwaway server in a temp dir, migrated first), and prints both
tables; on PostgreSQL the server's figures include the database's processes (the postmaster and
its children), also shown apart. Exits 1 when any request failed.
"""

from __future__ import annotations

import argparse
import heapq
import io
import json
import multiprocessing
import os
import random
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script: scripts.* too

from agent.sync.client import ControlPlaneClient, ManifestUpdate
from common.reports import LatencyQuantiles, Report, ShadowMetrics
from common.schemas import ActualModel, EnrollRequest, Heartbeat
from scripts.cluster.postgres import LocalPostgres, migrate, postgres_bin
from scripts.procfs import process_tree, tree_usage

ENV = "load"
MODEL = "fleet-model"
ENDPOINTS = ("enroll", "manifest", "heartbeat", "reports")
BACKENDS = ("sqlite", "postgresql")


@dataclass(frozen=True)
class Pacing:
    """How often each simulated agent calls each endpoint, in seconds, and how it is spread."""

    poll: float
    heartbeat: float
    reports: float
    reports_per_batch: int
    jitter: float = 0.2
    ramp: float = 5.0  # enrollments are spread over this many seconds


# --- the server's CPU and memory, from /proc ---------------------------------------------------


class ServerWatch:
    """Sample the server tree's CPU and memory (and its database's) once a second under load."""

    def __init__(self, pid: int, database_pid: int | None = None) -> None:
        self.roots = {"server": pid} if database_pid is None else {
            "server": pid, "database": database_pid,
        }  # fmt: skip
        self.peak_rss = dict.fromkeys(self.roots, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ServerWatch:
        self._cpu0 = {name: tree_usage(pid)[0] for name, pid in self.roots.items()}
        self._t0 = time.monotonic()
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self._sample()

    def _sample(self) -> dict[str, tuple[float, int]]:
        usage = {name: tree_usage(pid) for name, pid in self.roots.items()}
        for name, (_, rss) in usage.items():
            self.peak_rss[name] = max(self.peak_rss[name], rss)
        return usage

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        usage = self._sample()
        wall = time.monotonic() - self._t0
        parts = {
            name: _figures(self.roots[name], cpu - self._cpu0[name], rss, self.peak_rss[name], wall)
            for name, (cpu, rss) in usage.items()
        }
        server = parts["server"]
        database = parts.get("database")
        if database is None:
            self.result = server
            return
        # The server's cost on PostgreSQL is its own and its database's; both shown apart too.
        cpu = server["cpu_seconds"] + database["cpu_seconds"]
        self.result = {
            **server,
            "processes": server["processes"] + database["processes"],
            "cpu_seconds": round(cpu, 2),
            "cpu_percent": round(100 * cpu / wall, 1) if wall > 0 else 0.0,
            "rss_mb": round(server["rss_mb"] + database["rss_mb"], 1),
            "peak_rss_mb": round(server["peak_rss_mb"] + database["peak_rss_mb"], 1),
            "control_plane": server,
            "database": database,
        }


def _figures(pid: int, cpu: float, rss: int, peak_rss: int, wall: float) -> dict:
    return {
        "pid": pid,
        "processes": len(process_tree(pid)),
        "cpu_seconds": round(cpu, 2),
        "cpu_percent": round(100 * cpu / wall, 1) if wall > 0 else 0.0,
        "rss_mb": round(rss / 2**20, 1),
        "peak_rss_mb": round(max(peak_rss, rss) / 2**20, 1),
    }


# --- setup: an environment, a real model desired there, an enrollment token --------------------


def tiny_model_bytes() -> bytes:
    """A real scikit-learn classifier of iris, as the bytes of a joblib file."""
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    data = load_iris(as_frame=True)
    buffer = io.BytesIO()
    joblib.dump(LogisticRegression(max_iter=300).fit(data.data, data.target), buffer)
    return buffer.getvalue()


def prepare(url: str, admin_token: str, agents: int) -> str:
    """Create the environment and its desired model; return an enrollment token for the fleet."""
    headers = {"Authorization": f"Bearer {admin_token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=60, verify=_TLS) as http:
        http.put(f"/api/v1/environments/{ENV}", json={}).raise_for_status()
        listed = http.get(f"/api/v1/models/{MODEL}/versions")
        if listed.status_code == 404 or not listed.json()["versions"]:
            pushed = http.post(
                f"/api/v1/models/{MODEL}/versions",
                files={"artifact": ("model.joblib", tiny_model_bytes())},
                data={"metadata": json.dumps({"description": "fleet load test"})},
            )
            pushed.raise_for_status()
            version = pushed.json()["version"]
        else:
            listed.raise_for_status()
            version = listed.json()["versions"][-1]["version"]
        desired = http.put(f"/api/v1/environments/{ENV}/desired/{MODEL}", json={"version": version})
        if desired.status_code != 409 or "already in that state" not in desired.text:
            desired.raise_for_status()  # a second run on the same server finds it desired
        created = http.post(
            "/api/v1/tokens",
            json={"role": "enrollment", "environment": ENV, "max_uses": agents},
        )
        created.raise_for_status()
        return created.json()["token"]


# --- the simulated agents ----------------------------------------------------------------------


@dataclass
class Tally:
    """What one worker measured: latencies in ms per endpoint, and errors."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: {e: [] for e in ENDPOINTS})
    errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ENDPOINTS, 0))
    statuses: dict[str, dict[str, int]] = field(default_factory=dict)
    samples: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, endpoint: str, started: float, outcome: str, error: str | None) -> None:
        elapsed = (time.perf_counter() - started) * 1000
        with self.lock:
            self.latencies[endpoint].append(elapsed)
            counts = self.statuses.setdefault(endpoint, {})
            counts[outcome] = counts.get(outcome, 0) + 1
            if error is not None:
                self.errors[endpoint] += 1
                if len(self.samples) < 10:
                    self.samples.append(f"{endpoint}: {error}")


class SimulatedAgent:
    """One agent of the fleet: its client, what it has applied, and its next report."""

    def __init__(self, index: int, url: str) -> None:
        self.index = index
        self.url = url
        self.client: ControlPlaneClient | None = None
        self.etag: str | None = None
        self.serving: int | None = None
        # As an agent's outbox: a batch is sent again, same ids, until it is acknowledged.
        self.unacknowledged: list[Report] = []
        self.acknowledged: set[str] = set()

    def enroll(self, enrollment_token: str) -> float:
        """Enroll; return when the request started (building the clients is not timed)."""
        with ControlPlaneClient(self.url, timeout=30, transport=transport()) as anonymous:
            started = time.perf_counter()
            answer = anonymous.enroll(
                enrollment_token,
                EnrollRequest(hostname=f"load-{self.index}", agent_version="fleet-sim"),
            )
        self.client = ControlPlaneClient(
            self.url, answer.token, agent_id=answer.agent_id, timeout=30, transport=transport()
        )
        return started

    def poll(self) -> str:
        assert self.client is not None
        result = self.client.fetch_manifest(self.etag)
        self.etag = result.etag
        if isinstance(result, ManifestUpdate):
            entry = result.signed.manifest.models.get(MODEL)
            self.serving = entry.primary.version if entry else None
            return "200"
        return "304"

    def heartbeat(self) -> str:
        assert self.client is not None
        models = {MODEL: ActualModel(serving=self.serving)} if self.serving else {}
        self.client.heartbeat(
            Heartbeat(
                agent_version="fleet-sim",
                hostname=f"load-{self.index}",
                applied_revision=0,
                models=models,
            )
        )
        return "200"

    def report(self, count: int) -> str:
        assert self.client is not None
        if self.serving is None:
            return "skipped"
        if not self.unacknowledged:
            self.unacknowledged = [shadow_report(self.serving) for _ in range(count)]
        batch = self.unacknowledged
        ack = self.client.send_reports(batch)
        answered = set(ack.stored) | set(ack.duplicates)
        if answered != {report.id for report in batch}:
            raise RuntimeError(f"{len(batch)} reports sent, {len(answered)} acknowledged")
        self.acknowledged |= answered
        self.unacknowledged = []
        return "200"

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


def transport() -> httpx.HTTPTransport:
    """An agent's own connection pool, sharing one TLS context with the others.

    httpx builds a TLS context per client (tens of milliseconds of CPU each); thousands of
    agents in one process would spend the run doing that instead of sending requests.
    """
    return httpx.HTTPTransport(verify=_TLS)


_TLS = ssl.create_default_context(cafile=os.environ.get("TETHER_CA_FILE") or None)


def shadow_report(version: int) -> Report:
    """A shadow report of one minute, as agent/reports/loop.py builds it."""
    end = datetime.now(UTC)
    shadowed = random.randint(50, 500)
    agreed = int(shadowed * random.uniform(0.9, 1.0))
    metrics = ShadowMetrics(
        requests=shadowed,
        shadowed=shadowed,
        dropped=0,
        shadow_errors=0,
        kind="classifier",
        agreement=agreed / shadowed,
        agreed=agreed,
        primary_latency=LatencyQuantiles(p50=1.0, p95=2.0, p99=3.0),
        shadow_latency=LatencyQuantiles(p50=1.1, p95=2.2, p99=3.3),
    )
    return Report(
        id=uuid.uuid4().hex,
        kind="shadow",
        model=MODEL,
        version=version,
        shadow_version=version,
        window_start=end - timedelta(minutes=1),
        window_end=end,
        requests=shadowed,
        shadow=metrics,
    )


def run_worker(
    url: str,
    enrollment_token: str,
    indices: list[int],
    pacing: Pacing,
    deadline: float,
    threads: int,
) -> dict:
    """Run the agents `indices` until the wall-clock `deadline`; return the tally as a dict."""
    tally = Tally()
    agents = [SimulatedAgent(i, url) for i in indices]
    jitter = pacing.jitter

    def spread(interval: float) -> float:
        return interval * random.uniform(1 - jitter, 1 + jitter)

    # A heap of (when, sequence, agent, action): the next thing each agent does.
    now = time.time()
    due: list[tuple[float, int, SimulatedAgent, str]] = []
    seq = 0
    for agent in agents:
        due.append((now + random.uniform(0, pacing.ramp), seq, agent, "enroll"))
        seq += 1
    heapq.heapify(due)
    heap_lock = threading.Lock()
    follow_up = {"manifest": pacing.poll, "heartbeat": pacing.heartbeat, "reports": pacing.reports}

    def act(agent: SimulatedAgent, action: str) -> None:
        nonlocal seq
        started = time.perf_counter()
        outcome, error = "error", None
        try:
            if action == "enroll":
                started = agent.enroll(enrollment_token)
                outcome = "201"
            elif action == "manifest":
                outcome = agent.poll()
            elif action == "heartbeat":
                outcome = agent.heartbeat()
            else:
                outcome = agent.report(pacing.reports_per_batch)
        except Exception as failure:  # every failure is counted, whatever its kind
            error = f"{type(failure).__name__}: {failure}"[:300]
        if outcome != "skipped":
            tally.record(action, started, outcome, error)
        at = time.time()
        with heap_lock:
            if action == "enroll":
                if agent.client is None:
                    return  # could not enroll: counted, and this agent stops
                # The first poll at once, the rest spread over their intervals.
                nexts = [
                    (at, "manifest"),
                    (at + random.uniform(0, pacing.heartbeat), "heartbeat"),
                    (at + random.uniform(0, pacing.reports), "reports"),
                ]
            else:
                nexts = [(at + spread(follow_up[action]), action)]
            for when, what in nexts:
                seq += 1
                heapq.heappush(due, (when, seq, agent, what))

    with ThreadPoolExecutor(max_workers=threads) as pool:
        inflight: set = set()
        while time.time() < deadline:
            with heap_lock:
                ready = []
                while due and due[0][0] <= time.time():
                    ready.append(heapq.heappop(due))
                wait = (due[0][0] - time.time()) if due else 0.05
            for _, _, agent, action in ready:
                inflight.add(pool.submit(act, agent, action))
            inflight = {f for f in inflight if not f.done()}
            time.sleep(min(max(wait, 0.001), 0.05, max(deadline - time.time(), 0)))
        for future in inflight:
            future.result()
    for agent in agents:
        agent.close()
    return {
        "latencies": tally.latencies,
        "errors": tally.errors,
        "statuses": tally.statuses,
        "samples": tally.samples,
        "enrolled": sum(agent.client is not None for agent in agents),
        "reports_acknowledged": sorted(set().union(*(agent.acknowledged for agent in agents))),
        "reports_unacknowledged": sum(len(agent.unacknowledged) for agent in agents),
    }


def _worker_entry(args: tuple) -> dict:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    return run_worker(*args)


# --- figures -----------------------------------------------------------------------------------


def quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summarise(parts: list[dict], seconds: float, agents: int) -> dict:
    endpoints = {}
    total = errors = 0
    for name in ENDPOINTS:
        values = [v for part in parts for v in part["latencies"][name]]
        failed = sum(part["errors"][name] for part in parts)
        statuses: dict[str, int] = {}
        for part in parts:
            for status, count in part["statuses"].get(name, {}).items():
                statuses[status] = statuses.get(status, 0) + count
        total += len(values)
        errors += failed
        p50, p99 = quantile(values, 0.5), quantile(values, 0.99)
        endpoints[name] = {
            "requests": len(values),
            "per_second": round(len(values) / seconds, 1),
            "errors": failed,
            "statuses": statuses,
            "p50_ms": round(p50, 1) if p50 is not None else None,
            "p99_ms": round(p99, 1) if p99 is not None else None,
            "max_ms": round(max(values), 1) if values else None,
        }
    every = [v for part in parts for name in ENDPOINTS for v in part["latencies"][name]]
    p99_all = quantile(every, 0.99)
    return {
        "agents": agents,
        "enrolled": sum(part["enrolled"] for part in parts),
        "seconds": round(seconds, 1),
        "requests": total,
        "requests_per_second": round(total / seconds, 1),
        "errors": errors,
        "p99_ms": round(p99_all, 1) if p99_all is not None else None,
        "endpoints": endpoints,
        "error_samples": [s for part in parts for s in part["samples"]][:10],
        "reports_acknowledged": sum(len(part["reports_acknowledged"]) for part in parts),
        "reports_unacknowledged": sum(part["reports_unacknowledged"] for part in parts),
    }


def print_table(result: dict) -> None:
    if "backend" in result:
        print(f"--- the control plane on {result['backend']}")
    print(
        f"{result['agents']} agents ({result['enrolled']} enrolled), {result['seconds']} s: "
        f"{result['requests']} requests, {result['requests_per_second']} req/s, "
        f"{result['errors']} errors, p99 {result['p99_ms']} ms"
    )
    print(
        f"{'endpoint':<10} {'requests':>9} {'req/s':>7} {'errors':>7} {'p50 ms':>8} {'p99 ms':>8}"
    )
    for name, row in result["endpoints"].items():
        print(
            f"{name:<10} {row['requests']:>9} {row['per_second']:>7} {row['errors']:>7} "
            f"{row['p50_ms'] if row['p50_ms'] is not None else '-':>8} "
            f"{row['p99_ms'] if row['p99_ms'] is not None else '-':>8}"
        )
    print(
        f"reports: {result['reports_acknowledged']} acknowledged, "
        f"{result['reports_unacknowledged']} still unacknowledged at the end"
    )
    server = result.get("server")
    if server:
        print(
            f"server (pid {server['pid']}, {server['processes']} processes): "
            f"CPU {server['cpu_percent']}% of one core ({server['cpu_seconds']} s), "
            f"RSS {server['rss_mb']} MB (peak {server['peak_rss_mb']} MB)"
        )
        for part, label in (
            ("control_plane", "  of which the control plane"),
            ("database", "  of which PostgreSQL"),
        ):
            if part in server:
                figures = server[part]
                print(
                    f"{label} (pid {figures['pid']}, {figures['processes']} processes): "
                    f"CPU {figures['cpu_percent']}% ({figures['cpu_seconds']} s), "
                    f"RSS {figures['rss_mb']} MB (peak {figures['peak_rss_mb']} MB)"
                )
    for sample in result["error_samples"]:
        print(f"  error: {sample}")


# --- running it --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class StartedServer:
    """A control plane this script started: where it is, and whose processes it costs."""

    backend: str
    url: str
    admin_token: str
    pid: int
    postgres: LocalPostgres | None = None  # on PostgreSQL, the database server it started

    @property
    def database_pid(self) -> int | None:
        return self.postgres.postmaster_pid() if self.postgres else None


@contextmanager
def started_server(workers: int | None, backend: str = "sqlite") -> Iterator[StartedServer]:
    """Start `tether server` on a free port and a temporary data dir, on SQLite or PostgreSQL.

    On PostgreSQL a throwaway server is started in a temp dir first (durable, as in
    production) and migrated with `tether server migrate`, as an operator would.
    """
    with tempfile.TemporaryDirectory(prefix="tether-load-") as tmp, _database(backend) as pg:
        data_dir = Path(tmp) / "data"
        port = free_port()
        command = [sys.executable, "-m", "common", "server", "--data-dir", str(data_dir)]
        command += ["--port", str(port)]
        if workers:
            command += ["--workers", str(workers)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
        token = None
        if pg is not None:
            database_url = pg.create_database("tether_load")
            token = migrate(database_url, data_dir)
            command += ["--database-url", database_url]
        with open(Path(tmp) / "server.log", "wb") as log:
            process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"the server exited with {process.returncode}")
                try:
                    if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("the server did not become ready within 60 s")
                time.sleep(0.1)
            if token is None:
                token = (data_dir / "admin.token").read_text().strip()
            yield StartedServer(backend, url, token, process.pid, pg)
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@contextmanager
def _database(backend: str) -> Iterator[LocalPostgres | None]:
    if backend == "sqlite":
        yield None
        return
    with LocalPostgres() as postgres:
        yield postgres


def run_fleet(
    url: str,
    admin_token: str,
    server_pid: int | None,
    *,
    database_pid: int | None = None,
    agents: int,
    duration: float,
    pacing: Pacing,
    processes: int,
    threads: int,
    report_ids: Path | None = None,
) -> dict:
    """Set up, run the fleet for `duration` seconds, and return the figures."""
    enrollment = prepare(url, admin_token, agents)
    slices = [list(range(agents))[i::processes] for i in range(processes)]
    started = time.time()
    deadline = started + duration
    jobs = [(url, enrollment, part, pacing, deadline, threads) for part in slices if part]
    # The worker processes are forked before the watcher's thread starts: no fork with threads.
    pool = multiprocessing.get_context("fork").Pool(len(jobs)) if len(jobs) > 1 else None
    watch = ServerWatch(server_pid, database_pid) if server_pid else None
    try:
        if watch:
            watch.__enter__()
        parts = [run_worker(*jobs[0])] if pool is None else pool.map(_worker_entry, jobs)
    finally:
        if watch:
            watch.__exit__(None, None, None)
        if pool is not None:
            pool.close()
            pool.join()
    result = summarise(parts, time.time() - started, agents)
    if report_ids is not None:  # for a test that counts what the control plane stored
        acknowledged = sorted(i for part in parts for i in part["reports_acknowledged"])
        report_ids.write_text("".join(f"{report_id}\n" for report_id in acknowledged))
    result["pacing"] = {
        "poll_s": pacing.poll,
        "heartbeat_s": pacing.heartbeat,
        "reports_s": pacing.reports,
        "reports_per_batch": pacing.reports_per_batch,
        "jitter": pacing.jitter,
        "ramp_s": pacing.ramp,
    }
    result["generator"] = {"processes": len(jobs), "threads_per_process": threads}
    if watch:
        result["server"] = watch.result
    return result


def run_started(backend: str, workers: int | None, options: dict) -> list[dict]:
    """Start a server on each backend in turn, run the same fleet on it; return the results."""
    backends = BACKENDS if backend == "both" else (backend,)
    if "postgresql" in backends and postgres_bin() is None:
        print("note: PostgreSQL is not installed: the fleet runs on SQLite only", file=sys.stderr)
        backends = tuple(b for b in backends if b != "postgresql")
    results = []
    for name in backends:
        with started_server(workers, name) as server:
            result = run_fleet(
                server.url,
                server.admin_token,
                server.pid,
                database_pid=server.database_pid,
                **options,
            )
        results.append({"backend": name, **result})
    return results


def _by_backend(results: list[dict]) -> dict:
    return {"backends": {result["backend"]: result for result in results}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    target = parser.add_argument_group("the control plane")
    target.add_argument("--url", help="the control plane to drive")
    target.add_argument("--admin-token", help="an admin token (or --admin-token-file)")
    target.add_argument("--admin-token-file", type=Path)
    target.add_argument("--server-pid", type=int, help="measure this process tree's CPU/memory")
    target.add_argument(
        "--ca-file", type=Path, help="trust this CA for an https URL (also TETHER_CA_FILE)"
    )
    target.add_argument(
        "--report-ids", type=Path, help="write the ids of every acknowledged report to this file"
    )
    target.add_argument(
        "--start-server", action="store_true", help="start a server on a temp dir and drive it"
    )
    target.add_argument("--server-workers", type=int, help="with --start-server [its default]")
    target.add_argument(
        "--backend",
        choices=(*BACKENDS, "both"),
        default="both",
        help="with --start-server: the store to start it on, or each in turn [both]",
    )
    fleet = parser.add_argument_group("the fleet")
    fleet.add_argument("--agents", type=int, default=200)
    fleet.add_argument("--duration", type=float, default=30.0, help="seconds [30]")
    fleet.add_argument("--poll-interval", type=float, default=10.0, help="seconds [10]")
    fleet.add_argument("--heartbeat-interval", type=float, default=15.0, help="seconds [15]")
    fleet.add_argument("--report-interval", type=float, default=30.0, help="seconds [30]")
    fleet.add_argument("--reports-per-batch", type=int, default=5)
    fleet.add_argument("--ramp", type=float, help="seconds to spread enrollments [duration/6]")
    fleet.add_argument("--processes", type=int, help="generator processes [1, or 2 past 500]")
    fleet.add_argument("--threads", type=int, default=16, help="threads per process [16]")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.ca_file is not None:
        global _TLS
        _TLS = ssl.create_default_context(cafile=str(args.ca_file))
    if args.agents < 1 or args.duration <= 0:
        parser.error("--agents and --duration must be positive")
    pacing = Pacing(
        poll=args.poll_interval,
        heartbeat=args.heartbeat_interval,
        reports=args.report_interval,
        reports_per_batch=args.reports_per_batch,
        ramp=args.ramp if args.ramp is not None else min(args.duration / 6, 30.0),
    )
    processes = args.processes or (1 if args.agents <= 500 else 2)
    options = dict(
        agents=args.agents,
        duration=args.duration,
        pacing=pacing,
        processes=processes,
        threads=args.threads,
        report_ids=args.report_ids,
    )
    if args.start_server:
        results = run_started(args.backend, args.server_workers, options)
        if not results:
            parser.error("PostgreSQL is not installed (apt-get install postgresql)")
        if args.json:
            print(json.dumps(results[0] if len(results) == 1 else _by_backend(results), indent=2))
        else:
            for result in results:
                print_table(result)
        return 1 if any(result["errors"] for result in results) else 0
    if not args.url:
        parser.error("give --url (with an admin token) or --start-server")
    token = args.admin_token
    if token is None and args.admin_token_file is not None:
        token = args.admin_token_file.read_text().strip()
    if not token:
        parser.error("give --admin-token or --admin-token-file")
    result = run_fleet(args.url, token, args.server_pid, **options)  # type: ignore[arg-type]
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
