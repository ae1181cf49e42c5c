"""What shadow and drift cost the primary: /predict latency at a fixed rate, hooks off and on.

Two agent inference servers, each in its own process, with the same model and rows: one bare (no
hooks: no drift window, no shadow), one with the agent's real hooks (the drift window, and the
shadow runner with a shadow model). This process drives them open-loop at a fixed request rate,
one-row `/predict` requests over a kept-alive connection each, in alternating slices of `--slice`
seconds, so that both see the same machine: the load other programs put on a shared machine
changes by the second, and back-to-back runs would compare it rather than the hooks. Prints
p50/p99 of both and their ratios per round and the median (targets: p50 <= 1.05, p99 <= 1.2).
`--isolation thread` runs the shadow in the agent's process instead of a child, for comparison.

Usage: python scripts/bench/shadow_overhead.py [--rate 200] [--seconds 10] [--rounds 3]
           [--slice 1] [--isolation process|thread]
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import joblib
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from agent.reports.drift import DriftWindows  # noqa: E402
from agent.reports.shadow import ShadowRunner  # noqa: E402
from agent.serving.app import InferenceServer, create_inference_app  # noqa: E402
from agent.serving.runtime import load_model  # noqa: E402
from agent.serving.slots import Deployed, ModelSlots  # noqa: E402
from common.digests import sha256_file  # noqa: E402
from common.drift import ReferenceProfile, build_profile  # noqa: E402
from tests.support.models import train_wine, wine_frame  # noqa: E402


def load(folder: Path, version: int):  # type: ignore[no-untyped-def]
    path = folder / f"v{version}.joblib"
    return load_model(path, name="wine", version=version, sha256=sha256_file(path), format="joblib")


def serve(hooks: bool, isolation: str, folder: str, profile_json: str, urls, done, stats) -> None:  # type: ignore[no-untyped-def]
    """Run one agent inference server (in its own process) until `done` is set."""
    primary, shadow = load(Path(folder), 1), load(Path(folder), 2)
    slots = ModelSlots()
    slots.swap("wine", Deployed(primary=primary, shadow=shadow if hooks else None))
    runner, windows = ShadowRunner(queue_size=1000, isolation=isolation), DriftWindows()  # type: ignore[arg-type]
    windows.serve("wine", primary.version, ReferenceProfile.model_validate_json(profile_json))
    if hooks and runner.process is not None:
        runner.process.start()  # an agent starts it when the shadow is deployed

    def on_prediction(event) -> None:  # type: ignore[no-untyped-def]
        windows.observe(event)
        runner.submit(event)

    app = create_inference_app(
        slots, is_ready=lambda: True, on_prediction=on_prediction if hooks else None
    )
    with InferenceServer(app, port=0) as server:
        urls.put((hooks, server.url))
        done.wait()
    runner.wait_idle()
    summary = ""
    if hooks:
        window = runner.take()[("wine", primary.version, shadow.version)]
        drift = windows.take()["wine"]
        summary = (
            f"shadow: {window.requests} requests, shadowed {window.shadowed}, dropped "
            f"{window.dropped}, errors {window.shadow_errors}, agreement {window.agreement:.3f}, "
            f"shadow latency p50 {window.shadow_latency.p50:.3f} ms, child crashes "
            f"{runner.process_crashes}; drift window: {drift[1]} requests, "
            f"{drift[2].sketch.rows} rows counted"
        )
    runner.stop()
    stats.put(summary)


def drive(client: httpx.Client, url: str, rows: list[dict], rate: float, seconds: float):  # type: ignore[no-untyped-def]
    """Send one-row requests at a fixed rate (open loop); return latencies in ms."""
    latencies = []
    interval = 1.0 / rate
    start = time.perf_counter()
    sent = 0
    while time.perf_counter() - start < seconds:
        due = start + sent * interval
        pause = due - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        row = rows[sent % len(rows)]
        began = time.perf_counter()
        response = client.post(f"{url}/predict/wine", json={"instances": [row]})
        latencies.append((time.perf_counter() - began) * 1000)
        assert response.status_code == 200, response.text
        sent += 1
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="per arm and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--slice", type=float, default=1.0, help="seconds before switching arm")
    parser.add_argument("--isolation", choices=["process", "thread"], default="process")
    args = parser.parse_args()
    features, _ = wine_frame()
    rows = features.to_dict("records")
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as folder:
        for version, c in ((1, 1.0), (2, 0.3)):
            joblib.dump(train_wine(c=c), Path(folder) / f"v{version}.joblib")
        primary = load(Path(folder), 1)
        profile = build_profile(features, predictions=primary.predict(rows).predictions)
        urls, stats, done = context.Queue(), context.Queue(), context.Event()
        servers = [
            context.Process(
                target=serve,
                args=(hooks, args.isolation, folder, profile.model_dump_json(), urls, done, stats),
            )
            for hooks in (False, True)
        ]
        for server in servers:
            server.start()
        try:
            found = dict(urls.get(timeout=300) for _ in servers)
            ratios = measure(found, rows, args)
        finally:
            done.set()
            summaries = [stats.get(timeout=120) for _ in servers]
            for server in servers:
                server.join(timeout=30)
    print("\n" + "".join(summaries))
    p50 = statistics.median(r[0] for r in ratios)
    p99 = statistics.median(r[1] for r in ratios)
    print(
        f"hooks on / off ({args.isolation}) at {args.rate:.0f} req/s, "
        f"median of {args.rounds} rounds: "
        f"p50 ratio {p50:.3f} (target <= 1.05), p99 ratio {p99:.3f} (target <= 1.2)"
    )


def measure(urls: dict[bool, str], rows: list[dict], args) -> list[tuple[float, float]]:  # type: ignore[no-untyped-def]
    """Drive both servers in alternating slices; return each round's (p50, p99) ratios."""
    ratios = []
    with httpx.Client(timeout=10) as bare, httpx.Client(timeout=10) as hooked:
        clients = {False: bare, True: hooked}
        for hooks in (False, True):  # warm up
            drive(clients[hooks], urls[hooks], rows, args.rate, 1.0)
        slices = max(1, round(args.seconds / args.slice))
        for round_index in range(args.rounds):
            latencies: dict[bool, list[float]] = {False: [], True: []}
            for index in range(2 * slices):
                hooks = (index + round_index) % 2 == 1
                latencies[hooks] += drive(clients[hooks], urls[hooks], rows, args.rate, args.slice)
            figures = {
                hooks: np.percentile(np.asarray(values), [50, 99])
                for hooks, values in latencies.items()
            }
            for hooks, label in ((False, "bare"), (True, f"drift + shadow ({args.isolation})")):
                p50, p99 = figures[hooks]
                print(
                    f"round {round_index + 1} {label}: p50 {p50:.3f} ms  p99 {p99:.3f} ms  "
                    f"({len(latencies[hooks])} requests)",
                    flush=True,
                )
            ratios.append(
                (figures[True][0] / figures[False][0], figures[True][1] / figures[False][1])
            )
    return ratios


if __name__ == "__main__":
    main()
