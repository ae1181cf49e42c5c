"""Measure one-row predictions over the agent's local HTTP API against calling the model in-process.

For a classifier (wine: StandardScaler + LogisticRegression) and a regressor (diabetes:
StandardScaler + Ridge), both fitted on DataFrames as real pipelines are, this measures:

  estimator.predict    the scikit-learn estimator on a ready one-row DataFrame (the floor)
  LoadedModel.predict  Tether's in-process API: validate the row, build the input, predict
                       (and predict_proba for the classifier), as `agent.serving.embedded` does
  POST /predict        the plain JSON API, one kept-alive connection, one request at a time
  POST /v2/.../infer   the Open Inference Protocol, one tensor per feature, same connection
  GET /v2/health/live  no model at all: the fixed cost of a request through HTTP and Flask

The server is `InferenceServer` (waitress, 8 threads) in a child process on 127.0.0.1, as the
agent runs it; the client is `http.client` in this process. Each measurement runs for a fixed
time (and at most MAX_REQUESTS calls); rounds are interleaved so a busy neighbour on the machine
hurts every line alike, and the median round is reported. About 80 s with the defaults.

    .venv/bin/python scripts/bench/predict.py [--seconds 1] [--rounds 7]
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import joblib  # noqa: E402  (after the sys.path entry, so `agent` imports from this checkout)
from sklearn.datasets import load_diabetes, load_wine  # noqa: E402
from sklearn.linear_model import LogisticRegression, Ridge  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from agent.serving.runtime import LoadedModel, load_model  # noqa: E402
from common.digests import sha256_file  # noqa: E402
from common.schemas import Feature  # noqa: E402

HOST = "127.0.0.1"
MAX_REQUESTS = 200_000  # a hard cap per measurement, whatever the clock says
SERVER_START_TIMEOUT = 30.0


@dataclass(frozen=True)
class Case:
    """One model to serve: its name, where its artifact is, its schema and one example row."""

    name: str
    path: Path
    schema: list[dict]
    row: dict


@dataclass
class Timing:
    """Latencies of one measurement, in seconds."""

    samples: list[float]
    elapsed: float

    @property
    def rate(self) -> float:
        return len(self.samples) / self.elapsed

    def quantile(self, q: float) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def build_cases(folder: Path) -> list[Case]:
    """Train both models on bundled datasets and save them with joblib."""
    cases = []
    for name, dataset, estimator in (
        ("wine", load_wine(as_frame=True), LogisticRegression(max_iter=500)),
        ("diabetes", load_diabetes(as_frame=True), Ridge()),
    ):
        model = make_pipeline(StandardScaler(), estimator).fit(dataset.data, dataset.target)
        path = folder / f"{name}.joblib"
        joblib.dump(model, path)
        schema = [{"name": str(c), "type": "number"} for c in dataset.data.columns]
        row = {str(k): float(v) for k, v in dataset.data.iloc[0].items()}
        cases.append(Case(name, path, schema, row))
    return cases


def load_case(case: Case) -> LoadedModel:
    return load_model(
        case.path,
        name=case.name,
        version=1,
        sha256=sha256_file(case.path),
        format="joblib",
        input_schema=[Feature.model_validate(f) for f in case.schema],
    )


def serve(cases: list[Case], threads: int, port_queue, stop_event) -> None:
    """Child process: load the models, serve them until told to stop."""
    from agent.serving.app import InferenceServer, create_inference_app
    from agent.serving.slots import Deployed, ModelSlots

    slots = ModelSlots()
    for case in cases:
        slots.swap(case.name, Deployed(load_case(case)))
    server = InferenceServer(
        create_inference_app(slots, is_ready=lambda: True), host=HOST, port=0, threads=threads
    )
    server.start()
    port_queue.put(server.port)
    stop_event.wait(600)
    server.stop(timeout=5)


def measure(call: Callable[[], object], seconds: float) -> Timing:
    """Call `call` back to back for `seconds` (or MAX_REQUESTS calls) and time each call."""
    for _ in range(20):  # warm caches and the connection
        call()
    samples = []
    clock = time.perf_counter
    started = clock()
    deadline = started + seconds
    while len(samples) < MAX_REQUESTS:
        before = clock()
        call()
        after = clock()
        samples.append(after - before)
        if after >= deadline:
            break
    return Timing(samples, clock() - started)


def http_caller(port: int, path: str, body: dict | None) -> Callable[[], object]:
    """Return a call that POSTs `body` (GETs if None) on one kept-alive connection."""
    connection = http.client.HTTPConnection(HOST, port, timeout=10)
    payload = json.dumps(body).encode() if body is not None else None
    method = "POST" if body is not None else "GET"
    headers = {"Content-Type": "application/json"}

    def call() -> bytes:
        connection.request(method, path, payload, headers)
        response = connection.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"{path}: {response.status} {data[:200]!r}")
        return data

    return call


def callers(case: Case, port: int) -> dict[str, Callable[[], object]]:
    model = load_case(case)
    frame = model.to_input([case.row])
    estimator = model.estimator
    tensors = [
        {"name": k, "shape": [1], "datatype": "FP64", "data": [v]} for k, v in case.row.items()
    ]
    return {
        "estimator.predict": lambda: estimator.predict(frame),
        "LoadedModel.predict": lambda: model.predict(model.validate([case.row])),
        "POST /predict": http_caller(port, f"/predict/{case.name}", {"instances": [case.row]}),
        "POST /v2/.../infer": http_caller(
            port, f"/v2/models/{case.name}/infer", {"inputs": tensors}
        ),
        "GET /v2/health/live": http_caller(port, "/v2/health/live", None),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="per measurement and round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=8, help="server threads")
    args = parser.parse_args()

    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="tether-bench-predict-") as folder:
        cases = build_cases(Path(folder))
        port_queue, stop_event = context.Queue(), context.Event()
        child = context.Process(target=serve, args=(cases, args.threads, port_queue, stop_event))
        child.start()
        try:
            port = port_queue.get(timeout=SERVER_START_TIMEOUT)
            results = run(cases, port, args.seconds, args.rounds)
        finally:
            stop_event.set()
            child.join(10)
            if child.is_alive():
                child.terminate()
                child.join(5)
    report(results, args)


def run(
    cases: list[Case], port: int, seconds: float, rounds: int
) -> dict[str, dict[str, list[Timing]]]:
    """Measure every line of every case, `rounds` times, interleaved."""
    plan = {case.name: callers(case, port) for case in cases}
    results: dict[str, dict[str, list[Timing]]] = {
        name: {line: [] for line in lines} for name, lines in plan.items()
    }
    for _ in range(rounds):
        for name, lines in plan.items():
            for line, call in lines.items():
                results[name][line].append(measure(call, seconds))
    return results


def report(results: dict[str, dict[str, list[Timing]]], args: argparse.Namespace) -> None:
    cpus = os.cpu_count()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"one-row requests, one kept-alive connection; median of {args.rounds} rounds of "
        f"{args.seconds:g} s; ratios are the median of each round's ratio; {cpus} CPUs, "
        f"load average {load:.1f} at the end"
    )
    for name, lines in results.items():
        print(f"\n{name}")
        print("| call | req/s | p50 ms | p99 ms | throughput vs estimator | vs LoadedModel |")
        print("|---|---:|---:|---:|---:|---:|")
        floor, api = lines["estimator.predict"], lines["LoadedModel.predict"]
        for line, timings in lines.items():
            timing = _median_round(timings)
            print(
                f"| {line} | {timing.rate:,.0f} | {timing.quantile(0.5) * 1e3:.2f} | "
                f"{timing.quantile(0.99) * 1e3:.2f} | {_ratio(timings, floor):.2f} | "
                f"{_ratio(timings, api):.2f} |"
            )


def _median_round(timings: list[Timing]) -> Timing:
    rates = [t.rate for t in timings]
    return timings[rates.index(statistics.median_low(rates))]


def _ratio(timings: list[Timing], baseline: list[Timing]) -> float:
    """Median over rounds of the throughput ratio, so a slow round weighs on both sides alike."""
    return statistics.median(t.rate / b.rate for t, b in zip(timings, baseline, strict=True))


if __name__ == "__main__":
    main()
