"""What the agent's Prometheus metrics cost a prediction: the hook alone, then one /predict.

1. The prediction hook of `agent.metrics.AgentMetrics` (two counters and a histogram, by model
   and version) called in a loop, against a hook that does nothing.
2. One-row `POST /predict/wine` over a kept-alive loopback connection to two inference servers
   (waitress, each in its own child process, the same wine pipeline), one with the metrics hook
   and `/metrics`, one without; rounds alternate between them so a busy neighbour hurts both
   alike, and the median of each round's mean is reported.

Usage: python scripts/bench/metrics_overhead.py [--requests 2000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path

import joblib

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from agent.metrics import AgentMetrics  # noqa: E402
from agent.serving.app import (  # noqa: E402
    InferenceServer,
    PredictionEvent,
    create_inference_app,
)
from agent.serving.runtime import LoadedModel, load_model  # noqa: E402
from agent.serving.slots import Deployed, ModelSlots  # noqa: E402
from common.digests import sha256_file  # noqa: E402
from tests.support.models import train_wine, wine_frame  # noqa: E402

HOST = "127.0.0.1"
ROW = wine_frame()[0].iloc[:1].to_dict("records")


def wine(folder: Path) -> LoadedModel:
    path = folder / "wine.joblib"
    if not path.exists():
        joblib.dump(train_wine(), path)
    return load_model(path, name="wine", version=1, sha256=sha256_file(path), format="joblib")


def hook_cost(loaded: LoadedModel, calls: int = 200_000) -> tuple[float, float]:
    """Return microseconds per call of the metrics hook and of a hook that does nothing."""
    prediction = loaded.predict(loaded.validate(ROW))
    event = PredictionEvent("wine", 1, "r", ROW, prediction, 0.0015, Deployed(loaded, None))
    timings = []
    for hook in (AgentMetrics().on_prediction(), lambda event: None):
        started = time.perf_counter()
        for _ in range(calls):
            hook(event)
        timings.append((time.perf_counter() - started) / calls * 1e6)
    return timings[0], timings[1]


def serve(folder: Path, with_metrics: bool, ports: multiprocessing.Queue) -> None:
    slots = ModelSlots()
    slots.swap("wine", Deployed(wine(folder), None))
    metrics = AgentMetrics() if with_metrics else None
    app = create_inference_app(
        slots,
        is_ready=lambda: True,
        on_prediction=metrics.on_prediction() if metrics else None,
        metrics=metrics.scrape if metrics else None,
    )
    with InferenceServer(app, host=HOST, port=0) as server:
        ports.put(server.port)
        time.sleep(3600)  # until the parent terminates this process


def mean_ms(port: int, requests: int) -> float:
    body = json.dumps({"instances": ROW})
    connection = http.client.HTTPConnection(HOST, port)
    started = time.perf_counter()
    for _ in range(requests):
        connection.request("POST", "/predict/wine", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        assert response.status == 200, response.status
    connection.close()
    return (time.perf_counter() - started) / requests * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        with_hook, bare = hook_cost(wine(folder))
        print(f"hook alone: {with_hook:.2f} us a call (a hook doing nothing: {bare:.2f} us)")
        ports: multiprocessing.Queue = multiprocessing.Queue()
        servers = {}
        for label in ("without metrics", "with metrics"):
            process = multiprocessing.Process(
                target=serve, args=(folder, label == "with metrics", ports), daemon=True
            )
            process.start()
            servers[label] = (process, ports.get(timeout=60))
        try:
            rounds: dict[str, list[float]] = {label: [] for label in servers}
            for _ in range(args.rounds):
                for label, (_, port) in servers.items():
                    rounds[label].append(mean_ms(port, args.requests))
        finally:
            for process, _ in servers.values():
                process.terminate()
                process.join()
    medians = {label: statistics.median(values) for label, values in rounds.items()}
    for label, values in rounds.items():
        shown = " / ".join(f"{value:.3f}" for value in values)
        print(f"/predict {label}: median {medians[label]:.3f} ms ({shown})")
    added = medians["with metrics"] - medians["without metrics"]
    print(f"difference: {added * 1000:+.1f} us a request")


if __name__ == "__main__":
    main()
