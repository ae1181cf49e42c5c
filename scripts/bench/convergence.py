"""How fast a fleet learns of a change, and what steady polling costs the control plane.

Starts the real control plane (`tether server`, gunicorn, default workers and threads) on a free
loopback port with every poll hint at `--interval` seconds, enrolls `--agents` agents, and runs
them in `--processes` child processes, one thread per agent. Each simulated agent is the
agent's real polling code: a `ControlPlaneClient` of its own (its own token, its own kept-alive
connection) sending `If-None-Match`, paced by `agent.sync.poller.poll_delay` at the server's hint
with the default 20 % jitter. The agents start at random phases, as a fleet does.

1. Steady state: once every agent has fetched the manifest, the control plane's CPU (all its
   processes) is measured over `--steady` seconds of 304 polls and reported per 1,000 agents.
2. Change: the desired state is changed; the time until the last agent has fetched the new
   revision is the convergence time (target <= interval + 1 s).

Bounded in time: every wait has a deadline and every process started here is ended here.

    .venv/bin/python scripts/bench/convergence.py [--agents 500] [--interval 10] [--check]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import queue
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _load import free_port, group_cpu_seconds, python, servers  # via the sys.path entry above

SLACK_TARGET = 1.0
IDLE_SECONDS = 5.0


# --- simulated agents, in child processes -----------------------------------------------------


def run_agents(
    url: str,
    agents: list[dict],
    interval: float,
    jitter: float,
    seconds: float,
    events: multiprocessing.Queue,
    polls: Any,
) -> None:
    """Poll like agents until `seconds` pass; report (agent, revision, wall time) on news.

    `polls` is a shared counter of the polls answered, for the parent to read.
    """
    from agent.sync.client import ControlPlaneClient, ManifestUpdate, NotModified, Unreachable
    from agent.sync.poller import poll_delay

    stop = threading.Event()

    def agent_loop(agent: dict, seed: int) -> None:
        rng = random.Random(seed)
        etag = None
        with ControlPlaneClient(url, agent["token"], agent_id=agent["agent_id"]) as client:
            # A fleet's agents started at different times: spread the first polls.
            if stop.wait(rng.uniform(0, interval)):
                return
            while not stop.is_set():
                try:
                    answer = client.fetch_manifest(etag)
                except Unreachable:
                    hint = None
                else:
                    hint = answer.poll_after
                    if isinstance(answer, ManifestUpdate):
                        etag = answer.etag
                        revision = answer.signed.manifest.revision
                        events.put((agent["agent_id"], revision, time.time()))
                    else:
                        assert isinstance(answer, NotModified)
                with polls.get_lock():
                    polls.value += 1
                stop.wait(poll_delay(hint, interval, jitter, rng))

    threads = [
        threading.Thread(target=agent_loop, args=(agent, index), daemon=True)
        for index, agent in enumerate(agents)
    ]
    for thread in threads:
        thread.start()
    stop.wait(seconds)
    stop.set()
    for thread in threads:
        thread.join(timeout=interval + 5)


# --- the benchmark ---------------------------------------------------------------------------


def setup(url: str, admin: str, count: int) -> list[dict]:
    headers = {"Authorization": f"Bearer {admin}"}
    with httpx.Client(base_url=url, headers=headers, timeout=60) as http:
        for _ in range(2):
            http.post(
                "/api/v1/models/fleet/versions",
                files={"artifact": ("m.bin", os.urandom(1024))},
                data={"metadata": "{}"},
            ).raise_for_status()
        http.put("/api/v1/environments/fleet", json={}).raise_for_status()
        http.put("/api/v1/environments/fleet/desired/fleet", json={"version": 1}).raise_for_status()
        token = http.post(
            "/api/v1/tokens",
            json={"role": "enrollment", "environment": "fleet", "max_uses": count},
        ).json()["token"]

    def enroll(number: int) -> dict:
        response = httpx.post(
            f"{url}/api/v1/agents/enroll",
            json={"hostname": f"sim-{number}"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )
        response.raise_for_status()
        return response.json()

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(enroll, range(count)))


class Events:
    """What the agents report: the time each one first saw each revision, and poll counts."""

    def __init__(self, queue: multiprocessing.Queue) -> None:
        self.queue = queue
        self.seen: dict[str, dict[int, float]] = {}

    def collect(self, until: float, done: Callable[[], bool]) -> bool:
        """Take reports until `done()` or the wall-clock deadline `until`; return done()."""
        while time.time() < until and not done():
            try:
                agent_id, revision, at = self.queue.get(timeout=0.2)
            except queue.Empty:
                continue
            self.seen.setdefault(agent_id, {}).setdefault(revision, at)
        return done()


def measure(args: argparse.Namespace, work: Path) -> dict:
    """Start the control plane and the fleet; return steady CPU and convergence delays."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    hints = {
        f"TETHER_{name}": str(args.interval)
        for name in ("POLL_INTERVAL", "ROLLOUT_POLL_INTERVAL", "IDLE_POLL_INTERVAL")
    }
    # Long enough for start-up, the steady window and the change, then the agents stop.
    lifetime = 5 * args.interval + args.steady + 30
    context = multiprocessing.get_context("spawn")
    events = Events(context.Queue())
    polls = context.Value("q", 0)
    children = []
    with servers(work) as started:
        command = [
            python(),
            "-m",
            "common",
            "server",
            "--data-dir",
            str(work / "data"),
            "--port",
            str(port),
        ]
        server = started.start("control-plane", command, port, env=hints)
        admin = (work / "data" / "admin.token").read_text().strip()
        print(f"enrolling {args.agents} agents ...", flush=True)
        agents = setup(url, admin, args.agents)
        everyone = {agent["agent_id"] for agent in agents}
        # What the control plane burns with no agent polling: gunicorn's own housekeeping.
        idle_before, idle_wall = group_cpu_seconds(server), time.monotonic()
        time.sleep(IDLE_SECONDS)
        idle = (group_cpu_seconds(server) - idle_before) / (time.monotonic() - idle_wall)
        try:
            for number in range(args.processes):
                child = context.Process(
                    target=run_agents,
                    args=(
                        url,
                        agents[number :: args.processes],
                        args.interval,
                        args.jitter,
                        lifetime,
                        events.queue,
                        polls,
                    ),
                    daemon=True,
                )
                child.start()
                children.append(child)
            if not events.collect(
                time.time() + 2 * args.interval + 30, lambda: set(events.seen) == everyone
            ):
                raise RuntimeError(
                    f"only {len(events.seen)} of {args.agents} agents fetched the first manifest"
                )
            print(
                f"all {args.agents} agents polling; measuring the control plane's CPU for "
                f"{args.steady:.0f} s ...",
                flush=True,
            )
            polls_before, cpu_before = polls.value, group_cpu_seconds(server)
            wall_before = time.monotonic()
            time.sleep(args.steady)
            cpu = group_cpu_seconds(server) - cpu_before
            wall = time.monotonic() - wall_before
            answered = polls.value - polls_before
            print("changing the desired state ...", flush=True)
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin}"}) as http:
                changed_at = time.time()
                answer = http.put("/api/v1/environments/fleet/desired/fleet", json={"version": 2})
                answer.raise_for_status()
            revision = answer.json()["revision"]
            events.collect(
                changed_at + 3 * args.interval + 10,
                lambda: all(revision in events.seen[a] for a in everyone),
            )
        finally:
            for child in children:
                child.terminate()
            for child in children:
                child.join(timeout=10)
    delays = sorted(
        events.seen[a][revision] - changed_at for a in everyone if revision in events.seen[a]
    )
    return {"cpu": cpu, "wall": wall, "polls": answered, "delays": delays, "idle": idle}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=500)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--interval", type=int, default=10, help="Poll hint, seconds.")
    parser.add_argument("--jitter", type=float, default=0.2)
    parser.add_argument("--steady", type=float, default=20.0, help="Seconds of CPU measuring.")
    parser.add_argument("--check", action="store_true", help="Exit 1 if the target is missed.")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="tether-convergence-"))
    try:
        result = measure(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    delays, wall = result["delays"], result["wall"]
    polls_per_second = result["polls"] / wall
    cores = result["cpu"] / wall
    per_thousand = cores * 1000 / args.agents
    print()
    print(
        f"agents: {args.agents} in {args.processes} processes, poll hint {args.interval} s, "
        f"jitter {args.jitter:.0%}, load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"steady polling: {polls_per_second:.1f} polls/s (all 304); control plane CPU "
        f"{cores * 100:.1f} % of a core, so {per_thousand * 100:.1f} % of a core per 1,000 "
        f"agents ({result['cpu'] / max(result['polls'], 1) * 1e3:.2f} ms of CPU per poll)"
    )
    print(
        f"                ({result['idle'] * 100:.1f} % of a core of it is the server idling: "
        f"{(cores - result['idle']) * 1000 / args.agents * 100:.1f} % per 1,000 agents above idle)"
    )
    converged = len(delays) == args.agents
    if delays:
        print(
            f"after the change: {len(delays)}/{args.agents} agents fetched it; p50 "
            f"{statistics.median(delays):.2f} s, p90 {delays[int(len(delays) * 0.9) - 1]:.2f} s,"
            f" last {delays[-1]:.2f} s (target <= {args.interval + SLACK_TARGET:.0f} s)"
        )
    ok = converged and delays[-1] <= args.interval + SLACK_TARGET
    print("target met" if ok else "TARGET MISSED")
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
