"""What the shadow costs the primary: /predict latency at a fixed rate, with and without a shadow.

Same process, same model, same rows, same run: the agent's inference server with its real hooks
(drift window + shadow queue) once with no shadow and once with a shadow model, driven open-loop
at a fixed request rate over one kept-alive connection. Prints p50/p99 of both and their ratios
(targets: p50 <= 1.05, p99 <= 1.2).

Usage: python scripts/bench/shadow_overhead.py [--rate 200] [--seconds 10] [--rounds 3]
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

from agent.drift_window import DriftWindows  # noqa: E402
from agent.inference_server import InferenceServer, create_inference_app  # noqa: E402
from agent.runtime import load_model  # noqa: E402
from agent.shadow import ShadowRunner  # noqa: E402
from agent.slots import Deployed, ModelSlots  # noqa: E402
from common.digests import sha256_file  # noqa: E402
from common.drift import build_profile  # noqa: E402
from tests.support.models import train_wine, wine_frame  # noqa: E402


def load(folder: Path, version: int, c: float):  # type: ignore[no-untyped-def]
    path = folder / f"v{version}.joblib"
    joblib.dump(train_wine(c=c), path)
    return load_model(path, name="wine", version=version, sha256=sha256_file(path), format="joblib")


def drive(url: str, rows: list[dict], rate: float, seconds: float) -> list[float]:
    """Send one-row requests at a fixed rate (open loop); return latencies in ms."""
    latencies = []
    interval = 1.0 / rate
    with httpx.Client(timeout=10) as client:
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


def run(with_shadow: bool, primary, shadow, profile, rows, rate, seconds) -> list[float]:  # type: ignore[no-untyped-def]
    slots = ModelSlots()
    slots.swap("wine", Deployed(primary=primary, shadow=shadow if with_shadow else None))
    runner, windows = ShadowRunner(queue_size=1000), DriftWindows()
    windows.serve("wine", primary.version, profile)

    def on_prediction(event) -> None:  # type: ignore[no-untyped-def]
        windows.observe(event)
        runner.submit(event)

    app = create_inference_app(slots, is_ready=lambda: True, on_prediction=on_prediction)
    # The load comes from another process, as a host's application would: a client thread here
    # would compete with the server for this process's GIL and distort what is measured.
    with InferenceServer(app, port=0) as server, _spawn().Pool(1) as pool:
        pool.apply(drive, (server.url, rows, rate, 1.0))  # warm up
        latencies = pool.apply(drive, (server.url, rows, rate, seconds))
    runner.wait_idle()
    metrics = runner.take()
    runner.stop()
    if with_shadow:
        window = metrics[("wine", primary.version, shadow.version)]
        print(
            f"    shadowed {window.shadowed}, dropped {window.dropped}, agreement "
            f"{window.agreement:.3f}",
            flush=True,
        )
    return latencies


def _spawn():  # type: ignore[no-untyped-def]
    return multiprocessing.get_context("spawn")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    features, _ = wine_frame()
    rows = features.to_dict("records")
    with tempfile.TemporaryDirectory() as folder:
        primary, shadow = load(Path(folder), 1, 1.0), load(Path(folder), 2, 0.3)
        profile = build_profile(features, predictions=primary.predict(rows).predictions)
        ratios = []
        for round_index in range(args.rounds):
            figures = {}
            for with_shadow in (False, True):
                label = "with shadow" if with_shadow else "no shadow"
                print(f"round {round_index + 1}: {label}", flush=True)
                latencies = np.asarray(
                    run(with_shadow, primary, shadow, profile, rows, args.rate, args.seconds)
                )
                figures[with_shadow] = (np.percentile(latencies, 50), np.percentile(latencies, 99))
                p50, p99 = figures[with_shadow]
                print(
                    f"    p50 {p50:.3f} ms  p99 {p99:.3f} ms  ({len(latencies)} requests)",
                    flush=True,
                )
            ratios.append(
                (figures[True][0] / figures[False][0], figures[True][1] / figures[False][1])
            )
    p50 = statistics.median(r[0] for r in ratios)
    p99 = statistics.median(r[1] for r in ratios)
    print(
        f"\nshadow / no shadow at {args.rate:.0f} req/s, median of {args.rounds} rounds: "
        f"p50 ratio {p50:.3f} (target <= 1.05), p99 ratio {p99:.3f} (target <= 1.2)"
    )


if __name__ == "__main__":
    main()
