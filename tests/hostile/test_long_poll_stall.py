"""Long-polls cannot starve the API: one agent's many waits, or many agents' waits, on a server.

The audit's reproduction: twenty concurrent `?wait=30` polls from one agent held all of the
server's threads and an admin's `GET /api/v1/models` took 28 s. The server here runs as shipped
(one worker of 8 threads, so it holds at most 4 waits), and every admin call must be answered
within a second while the waits are held.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import httpx
import pytest

from tests.support.operator import Operator
from tests.support.processes import ServerProcess

pytestmark = pytest.mark.e2e

WAITS = 20
WAIT_SECONDS = 30
SEATS = 4  # half of the server's 8 threads: the default long_poll_slots


@pytest.fixture(scope="module")
def server(tmp_path_factory, wine_model_bytes: bytes) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("stall") / "data") as server:
        admin = Operator.of(server)
        admin.environment("production")
        admin.push("wine", wine_model_bytes)
        admin.push("wine", wine_model_bytes + b"2")
        admin.desire("production", "wine", 1)
        admin.close()
        yield server


@pytest.fixture
def admin(server: ServerProcess) -> Iterator[Operator]:
    admin = Operator.of(server)
    yield admin
    admin.close()


def enroll(admin: Operator, count: int) -> list[dict]:
    enrollment = admin.enrollment_token("production")
    agents = []
    for index in range(count):
        answer = admin.http.post(
            "/api/v1/agents/enroll",
            json={"hostname": f"waiter-{index}"},
            headers={"Authorization": f"Bearer {enrollment}"},
        )
        assert answer.status_code == 201, answer.text
        agents.append(answer.json())
    return agents


def current_etag(server: ServerProcess, agent: dict) -> str:
    response = httpx.get(
        f"{server.url}/api/v1/agents/{agent['agent_id']}/manifest",
        headers={"Authorization": f"Bearer {agent['token']}"},
    )
    assert response.status_code == 200, response.text
    return response.headers["ETag"]


def long_poll(server: ServerProcess, agent: dict, etag: str) -> tuple[int, float]:
    """Send one long-poll on its own connection; return its status and how long it was held."""
    started = time.monotonic()
    response = httpx.get(
        f"{server.url}/api/v1/agents/{agent['agent_id']}/manifest?wait={WAIT_SECONDS}",
        headers={"Authorization": f"Bearer {agent['token']}", "If-None-Match": etag},
        timeout=WAIT_SECONDS + 15,
    )
    return response.status_code, time.monotonic() - started


def admin_call_seconds(admin: Operator) -> float:
    started = time.monotonic()
    response = admin.http.get("/api/v1/models")
    assert response.status_code == 200, response.text
    return time.monotonic() - started


def change_desired(admin: Operator) -> None:
    """Flip the primary of wine between its two versions: a new revision for every agent."""
    desired = admin.http.get("/api/v1/environments/production/desired").json()
    admin.desire("production", "wine", 3 - desired["models"]["wine"]["version"])


def wait_until_settled(polls: list[Future], still_held: int, timeout: float = 10.0) -> None:
    """Wait until all but `still_held` of the polls have been answered."""
    deadline = time.monotonic() + timeout
    while sum(not poll.done() for poll in polls) > still_held and time.monotonic() < deadline:
        time.sleep(0.05)


def test_twenty_waits_from_one_agent_hold_one_seat(server: ServerProcess, admin: Operator):
    (agent,) = enroll(admin, 1)
    etag = current_etag(server, agent)
    with ThreadPoolExecutor(WAITS) as pool:
        polls = [pool.submit(long_poll, server, agent, etag) for _ in range(WAITS)]
        wait_until_settled(polls, still_held=1)
        # Each newer wait displaced the older one: all but one answered at once, unchanged.
        answered = [poll.result() for poll in polls if poll.done()]
        assert len(answered) == WAITS - 1
        assert all(status == 304 and held < 10 for status, held in answered)
        assert max(admin_call_seconds(admin) for _ in range(5)) < 1.0
        # The one wait still held is a real long-poll: a change wakes it with the new manifest.
        (held,) = [poll for poll in polls if not poll.done()]
        change_desired(admin)
        status, seconds = held.result(timeout=10)
        assert status == 200
        assert seconds < WAIT_SECONDS


def test_waits_from_many_agents_leave_the_api_threads(server: ServerProcess, admin: Operator):
    agents = enroll(admin, WAITS)
    etag = current_etag(server, agents[0])  # one environment, one revision: the same for all
    with ThreadPoolExecutor(WAITS) as pool:
        polls = [pool.submit(long_poll, server, agent, etag) for agent in agents]
        wait_until_settled(polls, still_held=SEATS)
        assert max(admin_call_seconds(admin) for _ in range(5)) < 1.0
        # Past the seats, a poll is answered at once as a short poll: 304 with the poll hint.
        answered = [poll.result() for poll in polls if poll.done()]
        assert len(answered) == WAITS - SEATS
        assert all(status == 304 and held < 10 for status, held in answered)
        held = [poll for poll in polls if not poll.done()]
        assert len(held) == SEATS
        change_desired(admin)
        assert all(poll.result(timeout=10)[0] == 200 for poll in held)
