"""Swapping a model while a request is in flight: the request keeps its snapshot."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from agent.serving.app import create_inference_app
from agent.serving.slots import Deployed, ModelSlots
from tests.agent.serving.support import Gate

ROW = {"a": 1.0, "b": 2.0}


def test_in_flight_request_finishes_on_its_model_and_the_next_gets_the_new_one():
    slow = Gate()
    slots = ModelSlots()
    slots.swap("m", Deployed(slow.model(1.0, "m", version=1)))
    events = []
    app = create_inference_app(slots, is_ready=lambda: True, on_prediction=events.append)

    with ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(app.test_client().post, "/predict/m", json={"instances": [ROW]})
        assert slow.entered.wait(5), "the slow request never reached its model"

        fast = Gate()
        fast.gate.set()
        old = slots.swap("m", Deployed(fast.model(2.0, "m", version=2)))
        after = app.test_client().post("/predict/m", json={"instances": [ROW]})

        slow.gate.set()
        before = in_flight.result(timeout=5)

    assert old is not None and old.primary.version == 1
    assert (before.json["version"], before.json["predictions"]) == (1, [1.0])
    assert (after.json["version"], after.json["predictions"]) == (2, [2.0])
    first, second = sorted(events, key=lambda e: e.version)
    assert first.deployed is old and second.deployed is slots.get("m")


def test_swap_under_concurrent_requests_never_mixes_models():
    slots = ModelSlots()
    open_gate = Gate()
    open_gate.gate.set()
    slots.swap("m", Deployed(open_gate.model(1.0, "m", version=1)))
    app = create_inference_app(slots, is_ready=lambda: True)
    stop = threading.Event()
    seen: list[tuple[int, float]] = []

    def hammer() -> None:
        client = app.test_client()
        while not stop.is_set():
            body = client.post("/predict/m", json={"instances": [ROW]}).json
            seen.append((body["version"], body["predictions"][0]))

    with ThreadPoolExecutor(4) as pool:
        workers = [pool.submit(hammer) for _ in range(4)]
        for version in range(2, 12):
            slots.swap("m", Deployed(open_gate.model(float(version), "m", version=version)))
        stop.set()
        for worker in workers:
            worker.result(timeout=10)

    assert seen and all(value == float(version) for version, value in seen)


def test_slots_api():
    slots = ModelSlots()
    gate = Gate()
    first = Deployed(gate.model(1.0, "a"))
    assert slots.swap("a", first) is None
    assert slots.get("a") is first and "a" in slots and len(slots) == 1
    assert slots.names() == ["a"] and slots.snapshot() == {"a": first}
    assert slots.remove("a") is first and slots.get("a") is None and slots.remove("a") is None
