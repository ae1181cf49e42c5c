"""Measure a bare Flask JSON endpoint under waitress, gunicorn sync and gunicorn gthread.

Each server runs in its own process group on a free loopback port; every cell (server x
concurrent kept-alive connections) is driven for a few seconds, rounds are interleaved so a busy
neighbour on the machine hurts every server alike, and the median round is reported. Takes about
two minutes with the defaults and ends every process it started.

    .venv/bin/python scripts/bench/wsgi_servers.py [--seconds 3] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from subprocess import Popen

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _apps import PATH  # found through the sys.path entry just above
from _load import (
    LOAD_TOOLS,
    LoadResult,
    Servers,
    Target,
    choose_load_tool,
    drive,
    free_port,
    group_cpu_seconds,
    load_tool,
    machine,
    probe,
    python,
    servers,
)

APPS = Path(__file__).resolve().parent / "_apps.py"
CONNECTIONS = (1, 16, 64)
BODY_BYTES = 512
WARMUP_SECONDS = 1.0


@dataclass(frozen=True)
class ServerConfig:
    """One server and its settings."""

    server: str  # waitress | sync | gthread
    workers: int
    threads: int

    @property
    def label(self) -> str:
        if self.server == "waitress":
            return f"waitress 1 process x {self.threads} threads"
        if self.server == "sync":
            return f"gunicorn sync {self.workers} workers"
        return f"gunicorn gthread {self.workers} workers x {self.threads} threads"


CONFIGS = (
    ServerConfig("waitress", 1, 4),
    ServerConfig("waitress", 1, 8),
    ServerConfig("sync", 2, 1),
    ServerConfig("sync", 4, 1),
    ServerConfig("gthread", 2, 4),
    ServerConfig("gthread", 2, 8),
    ServerConfig("gthread", 4, 4),
    ServerConfig("gthread", 4, 2),
)


@dataclass(frozen=True)
class Cell:
    """One timed run: the load result and the server's CPU time over it."""

    load: LoadResult
    cpu_seconds: float

    @property
    def cpu_us_per_request(self) -> float:
        return 1e6 * self.cpu_seconds / self.load.requests if self.load.requests else float("nan")


def start(running: Servers, config: ServerConfig, tmp: Path) -> tuple[Target, Popen]:
    """Start one server with the bare Flask app; return the target to drive and the process."""
    port = free_port()
    data_dir = tmp / f"{config.server}-{config.workers}x{config.threads}"
    data_dir.mkdir()
    command = [
        python(),
        str(APPS),
        "--app",
        "flask",
        "--server",
        config.server,
        "--port",
        str(port),
        "--workers",
        str(config.workers),
        "--threads",
        str(config.threads),
        "--size",
        str(BODY_BYTES),
        "--data-dir",
        str(data_dir),
    ]
    process = running.start(config.label, command, port)
    target = Target(config.label, port, PATH)
    status, body, _ = probe(target)
    if status != 200 or len(body) != BODY_BYTES:
        raise RuntimeError(f"{config.label}: unexpected answer {status}, {len(body)} bytes")
    return target, process


def measure(target: Target, process: Popen, connections: int, seconds: float) -> Cell:
    """Drive one cell and account the server's CPU time over it."""
    before = group_cpu_seconds(process)
    load = drive(target, connections, seconds)
    return Cell(load, group_cpu_seconds(process) - before)


def run(seconds: float, rounds: int) -> dict[tuple[ServerConfig, int], list[Cell]]:
    """Start every server, then drive every cell `rounds` times, interleaved."""
    cells: dict[tuple[ServerConfig, int], list[Cell]] = {}
    with tempfile.TemporaryDirectory(prefix="tether-wsgi-") as tmp, servers(Path(tmp)) as running:
        started = {config: start(running, config, Path(tmp)) for config in CONFIGS}
        for target, _ in started.values():
            drive(target, 16, WARMUP_SECONDS)
        for round_number in range(1, rounds + 1):
            for config, (target, process) in started.items():
                for connections in CONNECTIONS:
                    cell = measure(target, process, connections, seconds)
                    cells.setdefault((config, connections), []).append(cell)
                    print(
                        f"  round {round_number}: {config.label:<42} c={connections:<3} "
                        f"{cell.load.rate:8.0f} req/s  errors {cell.load.errors}",
                        file=sys.stderr,
                        flush=True,
                    )
    return cells


def median_cell(cells: list[Cell]) -> Cell:
    """Pick the run with the median rate (the lower middle one for an even count)."""
    ordered = sorted(cells, key=lambda cell: cell.load.rate)
    return ordered[(len(ordered) - 1) // 2]


def report(cells: dict[tuple[ServerConfig, int], list[Cell]]) -> None:
    """Print one Markdown table: median and best req/s, errors and CPU cost per request."""
    print(
        "| server | conns | req/s median | req/s best | req/s each round | errors "
        "| server CPU us/req |"
    )
    print("|---|---:|---:|---:|---|---:|---:|")
    for (config, connections), runs in cells.items():
        middle = median_cell(runs)
        best = max(cell.load.rate for cell in runs)
        each = " / ".join(f"{cell.load.rate:.0f}" for cell in runs)
        errors = sum(cell.load.errors for cell in runs)
        print(
            f"| {config.label} | {connections} | {middle.load.rate:,.0f} | {best:,.0f} | {each} "
            f"| {errors} | {middle.cpu_us_per_request:,.0f} |"
        )
    print()
    for name, pick in (("median", median_cell), ("best", _best_cell)):
        winner = max(CONFIGS, key=lambda config: _concurrent_rate(cells, config, pick))
        print(f"Highest {name} throughput at 16 + 64 connections: {winner.label}")


def _best_cell(cells: list[Cell]) -> Cell:
    # Other jobs on the machine only ever slow a run down: the best round is the least disturbed.
    return max(cells, key=lambda cell: cell.load.rate)


def _concurrent_rate(
    cells: dict[tuple[ServerConfig, int], list[Cell]],
    config: ServerConfig,
    pick: Callable[[list[Cell]], Cell],
) -> float:
    return sum(pick(cells[(config, c)]).load.rate for c in CONNECTIONS if c > 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="Length of each cell.")
    parser.add_argument("--rounds", type=int, default=2, help="Interleaved repetitions.")
    parser.add_argument(
        "--load",
        choices=LOAD_TOOLS,
        default="auto",
        help="Load generator: wrk when installed (auto), or the Python one.",
    )
    args = parser.parse_args()
    choose_load_tool(args.load)
    print(f"machine: {machine()}")
    print(
        f"load generator: {load_tool()}; body: {BODY_BYTES} bytes; "
        f"{args.seconds:g} s per cell, {args.rounds} rounds",
        flush=True,
    )
    started = time.monotonic()
    cells = run(args.seconds, args.rounds)
    report(cells)
    print(f"\n(took {time.monotonic() - started:.0f} s; load average now {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the servers are already stopped
        sys.exit(130)
