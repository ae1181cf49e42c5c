"""Fleet status a page at a time: counted by state, the agents that need a look first."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.schemas import ActualModel, AgentInfo, DesiredModel, DesiredState
from control_plane.convergence import agent_state
from control_plane.fleet import agent_status, state_rule
from control_plane.store.agents import AgentFacts
from tests.support.api import Api, assert_error
from tests.support.fleet import mixed_fleet

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
STALE_AFTER = 120
VERSIONS = st.one_of(st.none(), st.integers(1, 3))
ACTUAL = st.builds(
    ActualModel,
    serving=VERSIONS,
    shadow=VERSIONS,
    status=st.sampled_from(["ok", "downloading", "failed"]),
)
NAMES = st.sampled_from(["wine", "iris", "fraud"])


@given(
    wanted=st.dictionaries(NAMES, st.builds(DesiredModel, version=st.integers(1, 3),
                                            shadow=VERSIONS), max_size=3),
    actual=st.dictionaries(NAMES, ACTUAL, max_size=3),
    seconds_ago=st.one_of(st.none(), st.integers(0, 400)),
)  # fmt: skip
def test_the_quick_rule_names_the_state_the_full_status_does(wanted, actual, seconds_ago):
    desired = DesiredState(environment="production", revision=3, models=wanted)
    heard = None if seconds_ago is None else NOW - timedelta(seconds=seconds_ago)
    agent = AgentInfo(
        id="agt_1", environment="production", hostname="h", labels={}, agent_version="",
        enrolled_at=NOW, last_seen=heard, applied_revision=3, models=actual,
    )  # fmt: skip
    # As the store keeps them: only the fields a heartbeat set.
    stored = {
        name: model.model_dump(mode="json", exclude_unset=True) for name, model in actual.items()
    }
    facts = AgentFacts(agent_id="agt_1", heard=heard, models=stored)
    full = agent_state(agent_status(agent, desired, NOW, STALE_AFTER))
    assert state_rule(desired, NOW, STALE_AFTER)(facts) == full


@pytest.fixture
def fleet(api: Api, wine_model_bytes: bytes) -> tuple[Api, dict[str, list[str]]]:
    return mixed_fleet(api, wine_model_bytes)


def page(api: Api, query: str = "") -> dict:
    response = api.get(f"/api/v1/environments/production/status{query}")
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_agents_come_failed_first_and_are_counted_by_state(fleet):
    api, states = fleet
    everything = page(api)
    assert everything["counts"] == {state: len(ids) for state, ids in states.items()}
    assert (everything["total"], everything["converged"], everything["next_offset"]) == (7, 3, None)
    order = [agent["agent_id"] for agent in everything["agents"]]
    assert order == states["failed"] + states["stale"] + states["lagging"] + states["converged"]


def test_pages_cover_the_fleet_once_and_a_state_keeps_its_own(fleet):
    api, states = fleet
    seen, offset = [], 0
    while offset is not None:
        answer = page(api, f"?limit=3&offset={offset}")
        assert len(answer["agents"]) <= 3 and answer["total"] == 7
        seen += [agent["agent_id"] for agent in answer["agents"]]
        offset = answer["next_offset"]
    assert sorted(seen) == sorted(agent for ids in states.values() for agent in ids)
    assert len(seen) == 7
    failed = page(api, "?state=failed")
    assert [a["agent_id"] for a in failed["agents"]] == states["failed"]
    assert failed["state"] == "failed" and failed["counts"]["converged"] == 3
    assert page(api, "?offset=100")["agents"] == []


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("?state=sleeping", "state"),
        ("?offset=-1", "offset"),
        ("?limit=0", "limit"),
        ("?limit=1001", "limit"),
        ("?limit=ten", "limit"),
        ("?page=2", "page"),
    ],
)
def test_bad_status_queries_are_refused_naming_the_parameter(fleet, query, field):
    api, _ = fleet
    response = api.get(f"/api/v1/environments/production/status{query}")
    assert_error(response, 422, None, field)
