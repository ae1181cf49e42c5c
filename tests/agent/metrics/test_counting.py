"""How each figure is counted, in one process: the real API in process and real wine models."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from agent.daemon import AgentDaemon
from agent.local.cache import ArtifactCache
from agent.local.state import Identity
from agent.metrics import POLL_OUTCOMES, AgentMetrics
from agent.serving.app import create_inference_app
from agent.serving.runtime import load_model
from agent.serving.slots import Deployed, ModelSlots
from agent.settings import AgentSettings
from agent.sync.client import ControlPlaneClient
from common.clock import utcnow
from common.digests import sha256_file
from tests.agent.metrics.scrape import Scrape
from tests.support.models import wine_frame

ROWS = wine_frame()[0].iloc[:3].to_dict("records")
URL = "http://tether.test"


def serving_app(metrics: AgentMetrics, wine_model_file: Path):
    slots = ModelSlots()
    loaded = load_model(
        wine_model_file,
        name="wine",
        version=4,
        sha256=sha256_file(wine_model_file),
        format="joblib",
    )
    slots.swap("wine", Deployed(loaded, None))
    app = create_inference_app(
        slots,
        is_ready=lambda: True,
        on_prediction=metrics.on_prediction(),
        metrics=metrics.scrape,
    )
    return app.test_client()


def test_agents_in_one_process_each_count_only_their_own(wine_model_file):
    first, second = AgentMetrics(), AgentMetrics()
    first_app, second_app = (
        serving_app(first, wine_model_file),
        serving_app(second, wine_model_file),
    )
    for rows in (ROWS[:1], ROWS[:3], ROWS[:2]):
        assert first_app.post("/predict/wine", json={"instances": rows}).status_code == 200
    response = first_app.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain; version=0.0.4")
    mine = Scrape(response.get_data(as_text=True))
    assert mine.get("tether_agent_predictions_total", model="wine", version=4) == 3
    assert mine.get("tether_agent_predicted_rows_total", model="wine", version=4) == 6
    theirs = Scrape(second_app.get("/metrics").get_data(as_text=True))
    assert theirs.get("tether_agent_predictions_total", model="wine", version=4) is None
    # Every poll outcome is there from the start, at zero, so rate() works from the first scrape.
    assert theirs.labelled("tether_agent_polls_total", "outcome") == dict.fromkeys(
        POLL_OUTCOMES, 0.0
    )


def test_openmetrics_is_served_to_a_scraper_that_asks_for_it(wine_model_file):
    app = serving_app(AgentMetrics(), wine_model_file)
    response = app.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert response.content_type.startswith("application/openmetrics-text")
    assert response.get_data(as_text=True).endswith("# EOF\n")


def test_downloaded_bytes_are_those_received_so_a_resume_counts_only_the_rest(
    app, api, wine_model_bytes, tmp_path
):
    api.create_env("production")
    version = api.operator.push("wine", wine_model_bytes, {})
    digest, size = version["artifact"]["sha256"], version["artifact"]["size"]
    # An agent may download only what its environment wants.
    assert api.set_desired("production", "wine", 1).status_code == 200
    enrolled = api.enroll("production")
    metrics = AgentMetrics()
    cache = ArtifactCache(tmp_path / "artifacts", reserve_bytes=0, chunk_bytes=4096)
    cache.prepare()
    kept = 1000  # an earlier, interrupted download left this much
    cache.part_path(digest).write_bytes(wine_model_bytes[:kept])
    # A transport given means the chunked path (not the copy-free one) carries the body.
    with ControlPlaneClient(
        URL, enrolled["token"], agent_id=enrolled["agent_id"], transport=httpx.WSGITransport(app)
    ) as client:
        opener = metrics.count_downloads(client.download)
        path = cache.get(digest, size, lambda offset: opener("wine", 1, offset))
    assert path.read_bytes() == wine_model_bytes
    counted = Scrape(metrics.scrape()[0].decode())
    assert counted.get("tether_agent_download_bytes_total", part="artifact") == size - kept
    assert counted.get("tether_agent_download_bytes_total", part="profile") == 0


def polled(settings: AgentSettings, identity: Identity, transport=None, polls: int = 1) -> Scrape:
    """Poll `polls` times with a daemon that serves nothing; return its metrics."""
    daemon = AgentDaemon(settings, identity=identity, transport=transport, serve=False)
    try:
        for _ in range(polls):
            daemon.poller.poll_once()
        return Scrape(daemon.metrics.scrape()[0].decode())
    finally:
        daemon.reporting.stop(timeout=0.5)
        daemon.reporting.outbox.close()
        daemon.client.close()


@pytest.mark.parametrize(
    ("token", "outcome"),
    [
        ("tether_agent_" + "x" * 43, "rejected"),  # a token the server never made
        (None, "refused"),  # no key this agent trusts signed the manifest
    ],
)
def test_a_poll_is_counted_by_its_outcome(app, api, tmp_path, token, outcome):
    api.create_env("production")
    enrolled = api.enroll("production")
    identity = Identity(
        agent_id=enrolled["agent_id"],
        token=token or enrolled["token"],
        url=URL,
        environment="production",
        hostname="serving-1",
        enrolled_at=utcnow(),
    )
    settings = AgentSettings(data_dir=tmp_path / "agent")
    scraped = polled(settings, identity, httpx.WSGITransport(app))
    polls = scraped.labelled("tether_agent_polls_total", "outcome")
    assert polls == {**dict.fromkeys(POLL_OUTCOMES, 0.0), outcome: 1.0}


def test_an_unreachable_control_plane_is_counted(tmp_path):
    identity = Identity(
        agent_id="agt_0",
        token="t",
        url="http://127.0.0.1:9",  # discard: nothing listens
        environment="production",
        hostname="serving-1",
        enrolled_at=utcnow(),
    )
    scraped = polled(
        AgentSettings(data_dir=tmp_path / "agent", request_timeout=2), identity, polls=2
    )
    assert scraped.get("tether_agent_polls_total", outcome="unreachable") == 2
    assert scraped.get("tether_agent_outbox_depth") == 0
    assert scraped.get("tether_agent_shadow_queue_depth") == 0
