"""The poll job, called directly, and the scheduler that runs it."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.support.agent_world import ENV, desire


def test_a_conditional_poll_waits_at_most_the_servers_hint(api, make_agent, push, wine_model_bytes):
    push(wine_model_bytes)
    desire(api, "wine", 1)
    agent = make_agent(poll_interval=1000)
    agent.poller.poll_once()
    seen: list[httpx.Response] = []
    real = agent.client._http._transport

    class Recording(httpx.BaseTransport):
        def handle_request(self, request):
            seen.append(response := real.handle_request(request))
            return response

    agent.client._http._transport = Recording()
    delay = agent.poller.poll_once()
    assert seen[0].status_code == 304
    hint = float(seen[0].headers["X-Tether-Poll-After"])
    assert hint * 0.8 <= delay <= hint


def test_backoff_grows_while_unreachable_and_resets_on_success(make_agent, transport):
    up = {"value": False}

    def flaky(request: httpx.Request) -> httpx.Response:
        if not up["value"]:
            raise httpx.ConnectError("connection refused")
        return transport.handle_request(request)

    agent = make_agent(
        httpx.MockTransport(flaky), backoff_initial=1.0, backoff_max=8.0, poll_interval=100.0
    )
    delays = [agent.poller.poll_once() for _ in range(6)]
    assert agent.poller.failures == 6
    assert all(0 <= d <= 8.0 for d in delays)
    state = agent.store.load()
    assert state.reachable is False and "connection refused" in state.last_error  # type: ignore[operator]
    assert state.last_successful_poll is None and state.last_poll_attempt is not None
    up["value"] = True
    delay = agent.poller.poll_once()
    assert agent.poller.failures == 0
    assert agent.store.load().reachable is True
    assert delay > 8.0  # back to the normal pace (the server's hint)


def test_a_5xx_counts_as_unreachable(make_agent):
    agent = make_agent(httpx.MockTransport(lambda r: httpx.Response(502, text="bad gateway")))
    agent.poller.poll_once()
    assert agent.poller.failures == 1
    assert "502" in agent.store.load().last_error  # type: ignore[operator]


def test_a_refused_poll_is_reported_without_backoff(make_agent):
    refuse = httpx.MockTransport(
        lambda r: httpx.Response(
            401,
            json={
                "error": {"code": "unauthenticated", "message": "token revoked", "details": None}
            },
        )
    )
    agent = make_agent(refuse, poll_interval=10.0)
    delay = agent.poller.poll_once()
    assert agent.poller.failures == 0 and 8.0 <= delay <= 10.0
    state = agent.store.load()
    assert "token revoked" in state.last_error and state.reachable is True  # type: ignore[operator]


def test_a_heartbeat_follows_every_reconcile(api, make_agent, push, wine_model_bytes, enrolled):
    agent = make_agent(heartbeat_interval=3600)
    agent.poller.poll_once()  # the first poll always reports
    seen = api.get(f"/api/v1/agents/{enrolled['agent_id']}").get_json()["last_seen"]
    assert seen is not None
    push(wine_model_bytes)
    desire(api, "wine", 1)
    agent.poller.poll_once()
    shown = api.get(f"/api/v1/agents/{enrolled['agent_id']}").get_json()
    assert shown["last_seen"] > seen
    assert shown["models"]["wine"]["serving"] == 1
    assert shown["models"]["wine"]["status"] == "ok"
    assert shown["hostname"] == "serving-1"


@pytest.mark.parametrize(("interval", "expected"), [(3600, 1), (0.001, 3)])
def test_heartbeats_at_least_every_interval(make_agent, interval, expected):
    agent = make_agent(heartbeat_interval=interval)
    sent: list[int] = []
    real = agent.poller.heartbeat
    agent.poller.heartbeat = lambda: sent.append(1) or real()  # type: ignore[method-assign]
    for _ in range(3):
        agent.poller.poll_once()
        time.sleep(0.002)
    assert len(sent) == expected


def test_labels_from_enrollment_and_settings_are_reported(make_agent):
    agent = make_agent(labels={"zone": "eu-1"})
    agent.poller.labels = {"rack": "r7", **agent.poller.labels}
    beat = agent.poller.build_heartbeat()
    assert beat.labels == {"rack": "r7", "zone": "eu-1"}
    assert beat.agent_version


def test_long_poll_returns_on_a_change(api, make_agent, push, wine_model_bytes):
    push(wine_model_bytes)
    push(wine_model_bytes, model="other")
    desire(api, "wine", 1)
    agent = make_agent(long_poll=5)
    agent.poller.poll_once()
    changer = threading.Timer(0.5, lambda: desire(api, "other", 1))
    started = time.monotonic()
    changer.start()
    try:
        delay = agent.poller.poll_once()
    finally:
        changer.join()
    assert 0.4 < time.monotonic() - started < 4.5
    assert delay <= 0.25  # the next long-poll starts at once
    assert set(agent.slots.names()) == {"wine", "other"}


def test_the_scheduler_polls_converges_and_stops_fast(api, make_agent, push, wine_model_bytes):
    push(wine_model_bytes)
    agent = make_agent(poll_interval=0.05, follow_poll_hint=False)
    agent.start()
    try:
        desire(api, "wine", 1)
        deadline = time.monotonic() + 10
        while "wine" not in agent.slots and time.monotonic() < deadline:
            time.sleep(0.02)
        assert "wine" in agent.slots
        status = api.get(f"/api/v1/environments/{ENV}/status").get_json()
        deadline = time.monotonic() + 5
        while status["converged"] != 1 and time.monotonic() < deadline:
            time.sleep(0.05)
            status = api.get(f"/api/v1/environments/{ENV}/status").get_json()
        assert status["converged"] == 1
    finally:
        started = time.monotonic()
        agent.stop(timeout=2.0)
        assert time.monotonic() - started < 2.5


def test_a_second_agent_on_the_same_data_dir_is_refused(make_agent):
    from agent.daemon import StartupError

    first = make_agent()
    first.start()
    try:
        second = make_agent(data_dir=first.settings.data_dir)
        with pytest.raises(StartupError, match="another agent"):
            second.start()
    finally:
        first.stop(timeout=2.0)
    third = make_agent(data_dir=first.settings.data_dir)
    third.start()  # the lock went with the first agent
    third.stop(timeout=2.0)
