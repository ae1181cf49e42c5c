"""Replicas on one PostgreSQL database: changes heard across them, one leader for policies.

Two apps in one process, each with its own pool, change feed and wait room, stand for two
replicas here; tests/e2e/test_cluster.py does the same with real processes behind nginx.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from control_plane.app import create_app
from control_plane.leadership import AdvisoryLockLeadership
from control_plane.long_poll import ANNOUNCED_LONG_POLL_STEP
from scripts.cluster.postgres import LocalPostgres
from tests.support.agent_process import eventually
from tests.support.api import Api
from tests.support.postgres import postgres_app_config


@pytest.fixture
def replicas(tmp_path: Path, postgres_url: str):
    config, token = postgres_app_config(postgres_url, tmp_path / "a")
    first = create_app(config)
    second = create_app({**config, "data_dir": tmp_path / "b", "secrets_dir": tmp_path / "a"})
    yield Api(first.test_client(), token), Api(second.test_client(), token)
    for app in (first, second):
        app.extensions["tether"].close()


def long_poll(api: Api, agent: dict, etag: str, wait: int, answers: list) -> None:
    started = time.monotonic()
    response = api.get(
        f"/api/v1/agents/{agent['agent_id']}/manifest?wait={wait}",
        token=agent["token"],
        **{"If-None-Match": etag},
    )
    answers.append((response.status_code, time.monotonic() - started))


def test_a_change_on_one_replica_wakes_a_long_poll_on_another_within_a_second(
    replicas, wine_model_bytes: bytes
):
    one, other = replicas
    one.create_env("production")
    one.operator.push("wine", wine_model_bytes)
    one.operator.push("wine", wine_model_bytes + b"2")
    one.set_desired("production", "wine", 1)
    agent = one.enroll("production")
    first = other.get(f"/api/v1/agents/{agent['agent_id']}/manifest", token=agent["token"])
    etag = first.headers["ETag"]
    feed = other.client.application.extensions["tether"].change_feed
    feed.ensure_running()
    assert feed.wait_listening(10)
    # Listening, the wait only looks for itself every few seconds: a quick answer is the feed's.
    assert other.client.application.extensions["tether"].long_poll_step() == (
        ANNOUNCED_LONG_POLL_STEP
    )
    answers: list = []
    waiter = threading.Thread(target=long_poll, args=(other, agent, etag, 30, answers))
    waiter.start()
    time.sleep(0.5)  # seated on the other replica
    changed = time.monotonic()
    one.set_desired("production", "wine", 2)
    waiter.join(timeout=30)
    status, _ = answers[0]
    assert status == 200
    assert time.monotonic() - changed < 1.0


def test_without_the_feed_a_long_poll_still_sees_the_change(
    tmp_path: Path, postgres_url: str, postgres_server: LocalPostgres, wine_model_bytes: bytes
):
    config, token = postgres_app_config(postgres_url, tmp_path / "a")
    dead_end = f"postgresql://tether@127.0.0.1:{postgres_server.port + 1}/nowhere"
    app = create_app({**config, "database_listen_url": dead_end})
    try:
        api = Api(app.test_client(), token)
        api.create_env("production")
        api.operator.push("wine", wine_model_bytes)
        api.operator.push("wine", wine_model_bytes + b"2")
        api.set_desired("production", "wine", 1)
        agent = api.enroll("production")
        etag = api.get(
            f"/api/v1/agents/{agent['agent_id']}/manifest", token=agent["token"]
        ).headers["ETag"]
        answers: list = []
        waiter = threading.Thread(target=long_poll, args=(api, agent, etag, 30, answers))
        waiter.start()
        time.sleep(0.5)
        assert not app.extensions["tether"].change_feed.listening
        changed = time.monotonic()
        api.set_desired("production", "wine", 2)
        waiter.join(timeout=30)
        assert answers[0][0] == 200 and time.monotonic() - changed < 1.0
    finally:
        app.extensions["tether"].close()


def test_one_leader_at_a_time_and_the_next_takes_over_when_it_dies(
    postgres_url: str, postgres_server: LocalPostgres
):
    first, second = AdvisoryLockLeadership(postgres_url), AdvisoryLockLeadership(postgres_url)
    try:
        assert first.leads() and first.leads()
        assert not second.leads()
        # The leader's session ends as a crash would end it: the server frees the lock.
        postgres_server.sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name LIKE 'tether-leader:%' AND pid <> pg_backend_pid() "
            "AND state IS NOT NULL AND pid = (SELECT pid FROM pg_locks WHERE locktype = 'advisory' "
            "AND granted LIMIT 1)"
        )
        assert not first.leads()  # it notices it lost the lead...
        # ...and the other takes it at a next pass: the server frees a lock once the backend
        # of the ended session has exited, a moment after the client hung up.
        assert eventually(second.leads)
        assert not first.leads()
        second.release()
        assert eventually(first.leads)
    finally:
        first.release()
        second.release()


def test_the_leader_lock_is_refused_on_a_database_that_is_not_there():
    nowhere = AdvisoryLockLeadership("postgresql://tether@127.0.0.1:1/nowhere")
    assert not nowhere.leads()  # and no exception: the pass is skipped, the next one retries
    httpx.Client().close()
