"""Measure what one agent costs the control plane and its database, and size a fleet from it.

Starts the control plane twice on free loopback ports, on SQLite and on PostgreSQL (a
throwaway, durable server in a temp dir, migrated first), each with the same small fleet of
enrolled agents (scripts/load/fleet.py's simulated agents: the real agent client). Then, in
interleaved rounds, drives each backend with a fixed count of each of the agent's three steady
requests, and accounts the CPU of the server's process tree and of PostgreSQL's (the postmaster
and its children) per request:

- a conditional manifest poll (answered 304),
- a heartbeat,
- a batch of 5 shadow reports;

and, on PostgreSQL, the WAL each writes (pg_current_wal_lsn, exact). Then it runs a fleet on
PostgreSQL at the agent's default intervals (agent/settings.py, with the server's steady poll
hint) and counts what the database did over the steady part of the run from
pg_stat_database (transactions committed, rows inserted, updated, deleted) and pg_stat_wal
(WAL syncs), per agent per minute; and the reports table's bytes per report
(pg_total_relation_size over its rows). From those it prints the capacity model: the cores
for the replicas and for the database, the database's write rate and its growth, for 10,000
and 100,000 agents, with its assumptions. Every run is bounded in count and time (about two
minutes with the defaults) and every process started here is ended here.

    PYTHONPATH=$PWD .venv/bin/python scripts/bench/capacity.py [--rounds 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script: scripts.* too

from agent.settings import AgentSettings
from control_plane.settings import ControlPlaneSettings
from scripts.bench._load import machine
from scripts.cluster.postgres import LocalPostgres, postgres_bin
from scripts.load.fleet import (
    Pacing,
    SimulatedAgent,
    StartedServer,
    prepare,
    run_fleet,
    started_server,
)
from scripts.procfs import tree_usage

AGENTS = 16  # enrolled per backend for the per-request cells
THREADS = 8  # concurrent requests, as many as one gunicorn worker has threads
REPORTS_PER_BATCH = 5
OPERATIONS = {"poll": 600, "heartbeat": 300, "report batch": 150}  # requests per cell
CELL_TIMEOUT_S = 60.0
FLEET_AGENTS = 200
FLEET_RAMP_S = 10.0
FLEET_SETTLE_S = 10.0  # after the ramp, before counting: every agent has enrolled and polled
STATS_FLUSH_S = 11.0  # an idle backend reports its counters within 10 s (PGSTAT_IDLE_INTERVAL)
SCALES = (10_000, 100_000)
UTILISATION = 0.5  # plan cores at half busy: headroom for rollouts, enrolments, restarts
REPLICA_CORES = 2  # a replica: gunicorn's 2 workers, one core each at most (the GIL)
DATABASE = "tether_load"  # the name fleet.started_server gives it


@dataclass
class Cell:
    """One timed run of one operation on one backend."""

    requests: int
    errors: int
    server_cpu: float
    database_cpu: float
    wal_bytes: int

    def per_request(self, value: float) -> float:
        return value / self.requests if self.requests else float("nan")


@dataclass
class Backend:
    """One running control plane and the enrolled agents that drive it."""

    name: str
    server: StartedServer
    agents: list[SimulatedAgent] = field(default_factory=list)

    @property
    def postgres(self) -> LocalPostgres | None:
        return self.server.postgres


# --- setup --------------------------------------------------------------------------------------


def enroll(backend: Backend, count: int) -> None:
    """Enroll `count` agents and fetch each one's manifest once, so the next polls are 304s."""
    token = prepare(backend.server.url, backend.server.admin_token, count + FLEET_AGENTS)
    for index in range(count):
        agent = SimulatedAgent(index, backend.server.url)
        agent.enroll(token)
        if agent.poll() != "200":
            raise RuntimeError(f"{backend.name}: the first manifest fetch was not a 200")
        backend.agents.append(agent)


# --- the per-request cells ----------------------------------------------------------------------


def _act(agent: SimulatedAgent, operation: str) -> bool:
    if operation == "poll":
        return agent.poll() == "304"
    if operation == "heartbeat":
        return agent.heartbeat() == "200"
    return agent.report(REPORTS_PER_BATCH) == "200"


def measure(backend: Backend, operation: str, count: int) -> Cell:
    """Send `count` requests of one kind, THREADS at a time, and account what they cost."""
    agents = backend.agents
    shares = [count // len(agents) + (i < count % len(agents)) for i in range(len(agents))]
    deadline = time.monotonic() + CELL_TIMEOUT_S

    def run(agent: SimulatedAgent, share: int) -> tuple[int, int]:
        done = errors = 0
        for _ in range(share):
            if time.monotonic() > deadline:
                break
            try:
                ok = _act(agent, operation)
            except Exception:  # every failure counts, whatever its kind
                ok = False
            done += ok
            errors += not ok
        return done, errors

    postmaster = backend.postgres.postmaster_pid() if backend.postgres else None
    wal0 = _wal_lsn(backend)
    server0 = tree_usage(backend.server.pid)[0]
    database0 = tree_usage(postmaster)[0] if postmaster else 0.0
    with ThreadPoolExecutor(THREADS) as pool:
        counts = list(pool.map(run, agents, shares))
    server = tree_usage(backend.server.pid)[0] - server0
    database = tree_usage(postmaster)[0] - database0 if postmaster else 0.0
    wal = _wal_lsn(backend) - wal0 if backend.postgres else 0
    done = sum(c[0] for c in counts)
    return Cell(done, sum(c[1] for c in counts), server, database, wal)


def _wal_lsn(backend: Backend) -> int:
    if backend.postgres is None:
        return 0
    # Our own query writes no WAL; the number is exact, with no statistics delay.
    rows = backend.postgres.query("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn", DATABASE)
    return int(rows[0][0])


def run_rounds(backends: list[Backend], rounds: int) -> dict[tuple[str, str], list[Cell]]:
    """Every operation on every backend, `rounds` times, interleaved."""
    cells: dict[tuple[str, str], list[Cell]] = {}
    for backend in backends:  # warm-up: connections, prepared statements, caches
        for operation in OPERATIONS:
            measure(backend, operation, 2 * len(backend.agents))
    for number in range(1, rounds + 1):
        for operation, count in OPERATIONS.items():
            for backend in backends:
                cell = measure(backend, operation, count)
                cells.setdefault((backend.name, operation), []).append(cell)
                print(
                    f"  round {number}: {backend.name:<10} {operation:<12} {cell.requests} ok, "
                    f"{cell.errors} errors; server {1e6 * cell.per_request(cell.server_cpu):,.0f}"
                    f" us, database {1e6 * cell.per_request(cell.database_cpu):,.0f} us",
                    file=sys.stderr,
                    flush=True,
                )
    return cells


# --- the fleet at the default intervals -------------------------------------------------------


def default_pacing() -> Pacing:
    """The agent's steady intervals: its defaults, with the server's steady poll hint."""
    agent = AgentSettings.model_fields
    server = ControlPlaneSettings.model_fields
    # An agent follows the server's hint (follow_poll_hint); steady state hints poll_interval.
    poll = float(server["poll_interval"].default)
    return Pacing(
        poll=poll,
        heartbeat=float(agent["heartbeat_interval"].default),
        reports=float(agent["report_interval"].default),
        reports_per_batch=2,  # one model with drift and shadow: two reports per window
        ramp=FLEET_RAMP_S,
    )


STAT_QUERY = """SELECT d.xact_commit, d.tup_inserted, d.tup_updated, d.tup_deleted,
    w.wal_sync, w.wal_records, pg_current_wal_lsn() - '0/0'::pg_lsn
    FROM pg_stat_database d, pg_stat_wal w WHERE d.datname = current_database()"""
STAT_NAMES = (
    "transactions committed",
    "rows inserted",
    "rows updated",
    "rows deleted",
    "WAL syncs",
    "WAL records",
    "WAL bytes",
)


def fleet_writes(backend: Backend, seconds: float) -> dict[str, Any]:
    """Run a fleet at the default intervals; count the database's work in its steady part."""
    assert backend.postgres is not None
    postgres = backend.postgres
    pacing = default_pacing()
    outcome: dict[str, Any] = {}

    def fleet() -> None:
        outcome["result"] = run_fleet(
            backend.server.url,
            backend.server.admin_token,
            backend.server.pid,
            database_pid=postgres.postmaster_pid(),
            agents=FLEET_AGENTS,
            duration=seconds,
            pacing=pacing,
            processes=1,
            threads=16,
        )

    thread = threading.Thread(target=fleet, daemon=True)
    started = time.monotonic()
    thread.start()
    time.sleep(FLEET_RAMP_S + FLEET_SETTLE_S)
    first, at_first = postgres.query(STAT_QUERY, DATABASE)[0], time.monotonic()
    end = started + seconds - 1
    time.sleep(max(0.0, end - time.monotonic()))
    thread.join(timeout=seconds + 120)
    # The counters of the window's last second are flushed within STATS_FLUSH_S of it; the
    # first sample lagged the same way, so the window stays the same length.
    last_at = time.monotonic()
    time.sleep(STATS_FLUSH_S)
    last = postgres.query(STAT_QUERY, DATABASE)[0]
    minutes = (last_at - at_first) / 60
    per_agent_minute = {
        name: (int(b) - int(a)) / FLEET_AGENTS / minutes
        for name, a, b in zip(STAT_NAMES, first, last, strict=True)
    }
    result = outcome.get("result", {})
    return {
        "agents": FLEET_AGENTS,
        "window_s": round(last_at - at_first, 1),
        "pacing": {
            "poll_s": pacing.poll,
            "heartbeat_s": pacing.heartbeat,
            "reports_s": pacing.reports,
            "reports_per_batch": pacing.reports_per_batch,
        },
        "errors": result.get("errors"),
        "requests": result.get("requests"),
        "per_agent_minute": per_agent_minute,
    }


def table_sizes(postgres: LocalPostgres) -> dict[str, float]:
    """Bytes per row of the tables that grow with the fleet, indexes and TOAST included."""
    rows = postgres.query(
        """SELECT pg_total_relation_size('reports'), (SELECT count(*) FROM reports),
                  pg_total_relation_size('agents'), (SELECT count(*) FROM agents)""",
        DATABASE,
    )[0]
    reports_bytes, reports, agents_bytes, agents = (int(v) for v in rows)
    return {
        "reports": reports,
        "bytes_per_report": reports_bytes / reports if reports else float("nan"),
        "agents": agents,
        "bytes_per_agent_row": agents_bytes / agents if agents else float("nan"),
    }


# --- the model ----------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def per_request_us(cells: list[Cell], part: Callable[[Cell], float]) -> float:
    return median([1e6 * cell.per_request(part(cell)) for cell in cells])


def figures(cells: dict[tuple[str, str], list[Cell]]) -> dict[str, dict[str, dict[str, float]]]:
    """Median CPU (us) and WAL (bytes) per request, per backend and operation."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for (backend, operation), runs in cells.items():
        out.setdefault(backend, {})[operation] = {
            "server_us": per_request_us(runs, lambda c: c.server_cpu),
            "database_us": per_request_us(runs, lambda c: c.database_cpu),
            "wal_bytes": median([c.per_request(c.wal_bytes) for c in runs]),
            "errors": sum(c.errors for c in runs),
        }
    return out


def per_agent_minute_requests(pacing: Pacing) -> dict[str, float]:
    return {
        "poll": 60 / pacing.poll,
        "heartbeat": 60 / pacing.heartbeat,
        "report batch": 60 / pacing.reports,
    }


def model(
    measured: dict[str, dict[str, float]],
    writes: dict[str, Any] | None,
    sizes: dict[str, float] | None,
    pacing: Pacing,
) -> list[dict[str, Any]]:
    """The replicas, database cores, write rate and growth for each fleet size."""
    rates = per_agent_minute_requests(pacing)
    server_s = sum(rates[op] * measured[op]["server_us"] for op in rates) / 60 / 1e6
    database_s = sum(rates[op] * measured[op]["database_us"] for op in rates) / 60 / 1e6
    rows = []
    for agents in SCALES:
        server_cores = agents * server_s
        database_cores = agents * database_s
        row: dict[str, Any] = {
            "agents": agents,
            "requests_per_s": agents * sum(rates.values()) / 60,
            "control_plane_cores_busy": server_cores,
            "replicas": math.ceil(server_cores / UTILISATION / REPLICA_CORES) + 1,
            "database_cores_busy": database_cores,
            "database_cores": math.ceil(database_cores / UTILISATION),
        }
        if writes is not None:
            per_minute = writes["per_agent_minute"]
            row["commits_per_s"] = agents * per_minute["transactions committed"] / 60
            row["row_writes_per_s"] = (
                agents
                * sum(per_minute[k] for k in ("rows inserted", "rows updated", "rows deleted"))
                / 60
            )
            row["wal_syncs_per_s"] = agents * per_minute["WAL syncs"] / 60
            row["wal_mb_per_s"] = agents * per_minute["WAL bytes"] / 60 / 2**20
        if sizes is not None:
            reports_per_day = agents * (60 / pacing.reports) * pacing.reports_per_batch * 1440
            row["reports_per_day"] = reports_per_day
            row["growth_gb_per_day"] = reports_per_day * sizes["bytes_per_report"] / 2**30
            row["agents_table_mb"] = agents * sizes["bytes_per_agent_row"] / 2**20
        rows.append(row)
    return rows


# --- reporting ----------------------------------------------------------------------------------


def report(
    measured: dict[str, dict[str, dict[str, float]]],
    writes: dict[str, Any] | None,
    sizes: dict[str, float] | None,
    models: dict[str, list[dict[str, Any]]],
    rounds: int,
) -> None:
    print("\n| backend | request | server CPU us | database CPU us | total us | WAL bytes |")
    print("|---|---|---:|---:|---:|---:|")
    for backend, operations in measured.items():
        for operation, f in operations.items():
            database = f"{f['database_us']:,.0f}" if backend == "postgresql" else "-"
            wal = f"{f['wal_bytes']:,.0f}" if backend == "postgresql" else "-"
            print(
                f"| {backend} | {operation}{' (5 reports)' if operation == 'report batch' else ''}"
                f" | {f['server_us']:,.0f} | {database} "
                f"| {f['server_us'] + f['database_us']:,.0f} | {wal} |"
            )
    print(f"(medians of {rounds} interleaved rounds, per request)")
    if "postgresql" in measured and "sqlite" in measured:
        print("\nPostgreSQL (server + database) / SQLite (server), CPU per request:")
        for operation in OPERATIONS:
            pg, lite = measured["postgresql"][operation], measured["sqlite"][operation]
            ratio = (pg["server_us"] + pg["database_us"]) / lite["server_us"]
            print(f"  {operation}: {ratio:.2f}")
    if writes is not None:
        pacing = writes["pacing"]
        print(
            f"\nFleet of {writes['agents']} agents on PostgreSQL at the default intervals (poll "
            f"{pacing['poll_s']:g} s, heartbeat {pacing['heartbeat_s']:g} s, a batch of "
            f"{pacing['reports_per_batch']} reports every {pacing['reports_s']:g} s), counted "
            f"over {writes['window_s']} s of steady state ({writes['requests']} requests, "
            f"{writes['errors']} errors); per agent per minute:"
        )
        for name, value in writes["per_agent_minute"].items():
            print(f"  {name}: {value:,.2f}")
    if sizes is not None:
        print(
            f"\nreports table: {sizes['bytes_per_report']:,.0f} bytes per report "
            f"({sizes['reports']} reports, indexes included); agents table: "
            f"{sizes['bytes_per_agent_row']:,.0f} bytes per agent ({sizes['agents']} agents)"
        )
    for backend, rows in models.items():
        print(f"\nCapacity model, control plane on {backend}:")
        print(
            "| agents | requests/s | replica cores busy | replicas (N+1) "
            "| database cores busy | database cores "
            "| commits/s | row writes/s | WAL syncs/s | WAL MB/s | reports/day | growth GB/day |"
        )
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for row in rows:
            cells = [
                f"{row['agents']:,}",
                f"{row['requests_per_s']:,.0f}",
                f"{row['control_plane_cores_busy']:.1f}",
                f"{row['replicas']}",
                f"{row['database_cores_busy']:.1f}",
                f"{row['database_cores']}",
            ]
            for key, fmt in (
                ("commits_per_s", "{:,.0f}"),
                ("row_writes_per_s", "{:,.0f}"),
                ("wal_syncs_per_s", "{:,.0f}"),
                ("wal_mb_per_s", "{:.2f}"),
                ("reports_per_day", "{:,.0f}"),
                ("growth_gb_per_day", "{:.1f}"),
            ):
                cells.append(fmt.format(row[key]) if key in row else "-")
            print("| " + " | ".join(cells) + " |")
    print(
        f"\nAssumptions: each agent polls every {default_pacing().poll:g} s (the steady hint; "
        "5 s during a rollout, 120 s after an hour idle), heartbeats every "
        f"{default_pacing().heartbeat:g} s and sends one batch of 2 reports a minute (one model "
        "with drift and shadow), costed as a batch of 5 (an upper bound); cores are planned at "
        f"{UTILISATION:.0%} busy; a replica is {REPLICA_CORES} cores (2 gunicorn workers) and "
        "one more is kept for a replica's loss; reports are kept for ever (no retention yet), "
        "sized from shadow reports (a drift report with many features is larger)."
    )


# --- running it ---------------------------------------------------------------------------------


@contextmanager
def started(names: list[str]) -> Iterator[list[Backend]]:
    """Start the control plane on each backend named; stop every one on the way out."""
    with ExitStack() as stack:
        backends = []
        for name in names:
            server = stack.enter_context(started_server(None, name))
            backends.append(Backend(name, server))
            stack.callback(_close_agents, backends[-1])
        yield backends


def _close_agents(backend: Backend) -> None:
    for agent in backend.agents:
        agent.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="Interleaved repetitions [3].")
    parser.add_argument(
        "--fleet-seconds", type=float, default=90.0, help="The default-interval fleet run [90]."
    )
    parser.add_argument("--json", action="store_true", help="Print one JSON object.")
    args = parser.parse_args()
    names = ["sqlite", "postgresql"]
    if postgres_bin() is None:
        print("note: PostgreSQL is not installed: measuring SQLite only", file=sys.stderr)
        names = ["sqlite"]
    began = time.monotonic()
    with started(names) as backends:
        for backend in backends:
            enroll(backend, AGENTS)
        print(f"machine: {machine()}", flush=True)
        cells = run_rounds(backends, args.rounds)
        on_pg = next((b for b in backends if b.postgres is not None), None)
        writes = sizes = None
        if on_pg is not None:
            writes = fleet_writes(on_pg, args.fleet_seconds)
            assert on_pg.postgres is not None
            sizes = table_sizes(on_pg.postgres)
    measured = figures(cells)
    pacing = default_pacing()
    # Replicas share a PostgreSQL database; SQLite is one node, so the model is PostgreSQL's.
    models = {}
    if "postgresql" in measured:
        models["postgresql"] = model(measured["postgresql"], writes, sizes, pacing)
    if args.json:
        print(
            json.dumps(
                {"measured": measured, "writes": writes, "sizes": sizes, "model": models},
                indent=2,
            )
        )
    else:
        report(measured, writes, sizes, models, args.rounds)
    print(f"\n(took {time.monotonic() - began:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
