"""`tether status` on a fleet: counts by state, a page, and where the next one starts."""

from __future__ import annotations

import pytest

from tests.support.fleet import mixed_fleet


def test_tether_status_shows_the_counts_and_where_the_next_page_starts(
    tether, api, wine_model_bytes
):
    _, states = mixed_fleet(api, wine_model_bytes)
    result = tether.run("status", "production", "--limit", "2", ok=True)
    assert "3/7 agent(s) converged (2 failed, 1 stale, 1 lagging)" in result.stdout
    assert states["failed"][0] in result.stdout and states["converged"][0] not in result.stdout
    assert "Showing agents 1-2; next: --offset 2" in result.stderr
    failed = tether.json("status", "production", "--state", "failed")
    assert [agent["agent_id"] for agent in failed["agents"]] == states["failed"]
    last = tether.run("status", "production", "--offset", "6", ok=True)
    assert "Showing agents 7-7" in last.stderr and "next" not in last.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--state", "sleeping"], "Invalid value for '--state'"),
        (["--limit", "0"], "Invalid value for '--limit'"),
        (["--limit", "1001"], "Invalid value for '--limit'"),
        (["--offset", "-3"], "Invalid value for '--offset'"),
    ],
)
def test_tether_status_bad_input(tether, args, message):
    result = tether.run("status", "production", *args, ok=False)
    assert result.exit_code == 2
    assert message in result.stderr
