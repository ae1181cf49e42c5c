"""ControlPlaneClient against the real API (no socket) and against failing servers."""

from __future__ import annotations

import logging

import httpx
import pytest

from agent.sync.client import (
    ClientError,
    ControlPlaneClient,
    ManifestUpdate,
    NotModified,
    Rejected,
    Unreachable,
)
from common.errors import TetherError
from common.schemas import ActualModel, EnrollRequest, Heartbeat
from tests.support.agent_world import URL


def agent_client(enrolled: dict, transport: httpx.BaseTransport) -> ControlPlaneClient:
    return ControlPlaneClient(
        URL, enrolled["token"], agent_id=enrolled["agent_id"], transport=transport
    )


def test_enroll_exchanges_the_enrollment_token(api, env, transport):
    token = api.create_token("enrollment", environment=env)
    with ControlPlaneClient(URL, transport=transport) as client:
        answer = client.enroll(token, EnrollRequest(hostname="h1", labels={"zone": "a"}))
    assert answer.environment == env
    assert answer.agent_id.startswith("agt_")
    assert answer.token


def test_enroll_with_a_bad_token_is_rejected_with_the_api_error(transport):
    with ControlPlaneClient(URL, transport=transport) as client, pytest.raises(Rejected) as caught:
        client.enroll("nope", EnrollRequest(hostname="h1"))
    assert caught.value.status == 401
    assert caught.value.error.code
    assert isinstance(caught.value, ClientError) and isinstance(caught.value, TetherError)


def test_manifest_then_not_modified_with_its_etag(api, enrolled, transport, wine_model_bytes):
    api.operator.push("wine", wine_model_bytes)
    api.set_desired("production", "wine", 1)
    with agent_client(enrolled, transport) as client:
        first = client.fetch_manifest()
        assert isinstance(first, ManifestUpdate)
        assert first.signed.manifest.models["wine"].primary.version == 1
        assert first.etag.startswith(f"r{first.signed.manifest.revision}.")
        assert first.poll_after and first.poll_after > 0
        second = client.fetch_manifest(first.etag)
        assert isinstance(second, NotModified)
        assert second.etag == first.etag and second.poll_after


def test_heartbeat_is_recorded(api, enrolled, transport):
    with agent_client(enrolled, transport) as client:
        ack = client.heartbeat(Heartbeat(hostname="h", models={"wine": ActualModel(serving=1)}))
    assert ack.agent_id == enrolled["agent_id"]
    shown = api.get(f"/api/v1/agents/{enrolled['agent_id']}").get_json()
    assert shown["models"]["wine"]["serving"] == 1


def test_an_agent_token_is_refused_another_agents_manifest(api, enrolled, transport):
    other = api.enroll("production", hostname="other")
    client = ControlPlaneClient(
        URL, enrolled["token"], agent_id=other["agent_id"], transport=transport
    )
    with client, pytest.raises(Rejected) as caught:
        client.fetch_manifest()
    assert caught.value.status == 403


@pytest.mark.parametrize(
    ("handler", "message"),
    [
        (lambda request: httpx.Response(503, text="down for maintenance"), "503"),
        (
            lambda request: httpx.Response(
                500, json={"error": {"code": "internal", "message": "boom"}}
            ),
            "boom",
        ),
        (lambda request: httpx.Response(200, text="<html>a captive portal</html>"), "unreadable"),
        (lambda request: (_ for _ in ()).throw(httpx.ConnectError("refused")), "ConnectError"),
        (lambda request: (_ for _ in ()).throw(httpx.ReadTimeout("slow")), "ReadTimeout"),
    ],
    ids=["503-text", "500-json", "not-json", "connect", "timeout"],
)
def test_unusable_answers_are_unreachable(handler, message):
    client = ControlPlaneClient(URL, "t", agent_id="agt_1", transport=httpx.MockTransport(handler))
    with client, pytest.raises(Unreachable, match=message):
        client.fetch_manifest()


def test_download_reports_where_the_server_started(api, enrolled, transport, wine_model_bytes):
    api.operator.push("wine", wine_model_bytes)
    api.set_desired("production", "wine", 1)
    with agent_client(enrolled, transport) as client:
        with client.download("wine", 1, offset=100) as stream:
            body = b"".join(stream.chunks())
            assert stream.offset == 100
        assert body == wine_model_bytes[100:]
        with pytest.raises(Rejected) as caught, client.download("wine", 2):
            pass
        assert caught.value.status == 404


def test_one_log_line_per_request(enrolled, transport, caplog):
    client = agent_client(enrolled, transport)
    with caplog.at_level(logging.DEBUG, logger="tether.agent.client"), client:
        client.fetch_manifest()
        with pytest.raises(Rejected), client.download("nope", 1):
            pass
    lines = [r.getMessage() for r in caplog.records if r.name == "tether.agent.client"]
    assert len(lines) == 2
    assert lines[0].startswith(f"GET /api/v1/agents/{enrolled['agent_id']}/manifest 200")
    assert lines[1].startswith("GET /api/v1/models/nope/versions/1/artifact 404")
