"""The agent's clock against the signed manifest's expiry, with the agent's clock injected.

Behaviour (docs/reliability.md, "Clock skew"): a manifest is refused once the agent's clock is
past `expires_at` + `clock_skew` (setting, default 300 s); `issued_at` is not checked, so a
slow clock accepts a manifest "from the future". A refused manifest changes nothing that serves,
and the refusal is reported; a restart serves the last applied models whatever the clock says.
Expiry refusals with a forged `expires_at` are in tests/agent/trust/test_refusals.py.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from agent.sync.reconciler import ManifestRefused
from common.clock import utcnow
from common.schemas import SignedManifest
from tests.support.agent_world import desire, served


def signed_now(api, agent) -> SignedManifest:
    identity = agent.identity
    response = api.get(f"/api/v1/agents/{identity.agent_id}/manifest", token=identity.token)
    assert response.status_code == 200
    return SignedManifest.model_validate(response.get_json())


@pytest.mark.parametrize(
    ("past_expiry", "skew", "accepted"),
    [
        (-86400.0, 300.0, True),  # a day before expiry
        (299.0, 300.0, True),  # inside the tolerance
        (301.0, 300.0, False),  # just past it
        (301.0, 3600.0, True),  # a looser setting
        (1.0, 0.0, False),  # no tolerance at all
    ],
)
def test_expiry_is_judged_by_the_agents_clock_with_the_skew_setting(
    api, serving, past_expiry, skew, accepted
):
    signed = signed_now(api, serving)
    clock: datetime = signed.manifest.expires_at + timedelta(seconds=past_expiry)
    serving.reconciler.now = lambda: clock
    serving.reconciler.clock_skew = skew
    if accepted:
        assert serving.reconciler.verify_manifest(signed) == signed.manifest
    else:
        with pytest.raises(ManifestRefused, match=f"{skew:.0f} s of skew allowed"):
            serving.reconciler.verify_manifest(signed)


def test_a_clock_far_behind_accepts_a_manifest_issued_in_its_future(api, serving):
    serving.reconciler.now = lambda: utcnow() - timedelta(days=30)
    desire(api, "wine", 2)
    serving.poller.poll_once()
    assert served(serving) == {"wine": 2}


def test_a_clock_ahead_of_expiry_refuses_keeps_serving_and_recovers_when_set_right(
    api, serving, make_agent
):
    serving.reconciler.now = lambda: utcnow() + timedelta(days=8)  # past a 7-day manifest
    revision = desire(api, "wine", 2)
    serving.poller.poll_once()
    assert served(serving) == {"wine": 1}
    actual = serving.store.load().actual["wine"]
    assert (actual.serving, actual.status, actual.stage) == (1, "failed", "manifest")
    assert "expired at" in actual.error
    assert serving.store.load().accepted_revision < revision

    # A restart with the clock still wrong serves the last applied model from the cache.
    restarted = make_agent(data_dir=serving.settings.data_dir)
    restarted.reconciler.now = serving.reconciler.now
    assert restarted.reconciler.restore() == ["wine"]
    assert served(restarted) == {"wine": 1}

    # The clock set right: the next poll asks for a full manifest (no 304) and converges.
    restarted.reconciler.now = utcnow
    restarted.poller.poll_once()
    assert served(restarted) == {"wine": 2}
    assert restarted.store.load().actual["wine"].status == "ok"
