"""A small fleet with an agent in every state, for the fleet-status tests of the API and CLI."""

from __future__ import annotations

from tests.support.api import Api


def mixed_fleet(api: Api, wine_model_bytes: bytes) -> tuple[Api, dict[str, list[str]]]:
    """Seven agents of production: two failed, one stale, one lagging, three converged."""
    api.create_env("production")
    api.operator.push("wine", wine_model_bytes)
    api.set_desired("production", "wine", 1)
    states = {"failed": [], "stale": [], "lagging": [], "converged": []}
    plan = ["converged", "failed", "lagging", "converged", "stale", "failed", "converged"]
    for index, state in enumerate(plan):
        agent = api.enroll("production", f"host-{index}")
        states[state].append(agent["agent_id"])
        if state == "stale":
            continue  # never heard from
        actual = {
            "failed": {"serving": None, "status": "failed", "error": "smoke test"},
            "lagging": {"serving": None, "status": "downloading"},
            "converged": {"serving": 1, "status": "ok"},
        }[state]
        beat = {"applied_revision": 1, "models": {"wine": actual}}
        response = api.send(
            "POST", f"/api/v1/agents/{agent['agent_id']}/heartbeat", beat, token=agent["token"]
        )
        assert response.status_code == 200
    return api, {state: sorted(ids) for state, ids in states.items()}
