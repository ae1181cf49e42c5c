"""The unchanged-manifest shortcut answers exactly as the Flask view would, and no more."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families
from werkzeug.test import Client

from tests.support.api import Api, assert_error
from tests.support.store import change_rows


@pytest.fixture
def world(api: Api, wine_model_bytes: bytes) -> Api:
    api.create_env("production")
    api.create_env("staging")
    api.operator.push("wine", wine_model_bytes)
    api.operator.push("wine", wine_model_bytes + b"2")
    api.set_desired("production", "wine", 1, 2)
    return api


def manifest_path(agent: dict) -> str:
    return f"/api/v1/agents/{agent['agent_id']}/manifest"


def current_etag(api: Api, agent: dict) -> str:
    response = api.get(manifest_path(agent), token=agent["token"])
    assert response.status_code == 200
    return response.headers["ETag"]


def manifest_304_count(api: Api) -> float:
    text = api.client.get("/metrics").get_data(as_text=True)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if (
                sample.name == "tether_http_requests_total"
                and labels.get("endpoint") == "agents.manifest"
                and labels.get("status") == "304"
            ):
                return sample.value
    return 0.0


def test_shortcut_sends_the_views_headers(world: Api, app):
    agent = world.enroll("production")
    etag = current_etag(world, agent)
    headers = {"Authorization": f"Bearer {agent['token']}", "If-None-Match": etag}
    through_shortcut = world.client.get(manifest_path(agent), headers=headers)
    # The Flask app beneath the shortcut: what the view itself answers to the same request.
    through_view = Client(app.wsgi_app.app).get(manifest_path(agent), headers=headers)
    assert through_shortcut.status_code == through_view.status_code == 304
    assert dict(through_shortcut.headers) == dict(through_view.headers)
    assert through_shortcut.data == through_view.data == b""


def test_shortcut_polls_are_counted_like_the_views(world: Api):
    agent = world.enroll("production")
    etag = current_etag(world, agent)
    before = manifest_304_count(world)
    for _ in range(5):
        response = world.get(manifest_path(agent), token=agent["token"], **{"If-None-Match": etag})
        assert response.status_code == 304
    assert manifest_304_count(world) == before + 5


def test_a_change_is_fetched_whole(world: Api):
    agent = world.enroll("production")
    etag = current_etag(world, agent)
    world.set_desired("production", "wine", 2, None)
    response = world.get(manifest_path(agent), token=agent["token"], **{"If-None-Match": etag})
    assert response.status_code == 200
    assert response.headers["ETag"] != etag
    assert response.get_json()["manifest"]["models"]["wine"]["primary"]["version"] == 2


@pytest.mark.parametrize(
    ("who", "status", "fragment"),
    [
        ("none", 401, "missing bearer token"),
        ("garbage", 401, "invalid, expired or revoked"),
        ("revoked", 401, "invalid, expired or revoked"),
        ("expired", 401, "invalid, expired or revoked"),
        ("other agent", 403, "its own agent"),
        ("viewer", 403, "viewer token may not"),
        ("staging agent", 403, "its own agent"),
    ],
)
def test_what_the_shortcut_refuses_gets_the_views_error(world: Api, app, who, status, fragment):
    agent = world.enroll("production", hostname="a")
    etag = current_etag(world, agent)
    tokens = {
        "none": None,
        "garbage": "not-a-token",
        "revoked": agent["token"],
        "expired": agent["token"],
        "other agent": world.enroll("production", hostname="b")["token"],
        "viewer": world.create_token("viewer"),
        "staging agent": world.enroll("staging", hostname="c")["token"],
    }
    if who == "revoked":
        change_rows(app, "UPDATE tokens SET revoked = 1 WHERE agent_id = ?", [agent["agent_id"]])
    if who == "expired":
        change_rows(
            app,
            "UPDATE tokens SET expires_at = ? WHERE agent_id = ?",
            ["2000-01-01T00:00:00+00:00", agent["agent_id"]],
        )
    headers = {"If-None-Match": etag}
    if tokens[who] is not None:
        headers["Authorization"] = f"Bearer {tokens[who]}"
    response = world.client.get(manifest_path(agent), headers=headers)
    assert fragment in assert_error(response, status)["message"]


def test_admins_and_long_polls_are_left_to_the_view(world: Api):
    agent = world.enroll("production")
    etag = current_etag(world, agent)
    as_admin = world.get(manifest_path(agent), **{"If-None-Match": etag})
    assert as_admin.status_code == 304
    long_poll = world.get(
        f"{manifest_path(agent)}?wait=0", token=agent["token"], **{"If-None-Match": etag}
    )
    assert long_poll.status_code == 304
    bad_query = world.get(
        f"{manifest_path(agent)}?wait=-1", token=agent["token"], **{"If-None-Match": etag}
    )
    assert_error(bad_query, 422, field="query.wait")


def test_a_manifest_already_built_is_sent_from_the_shortcut_as_the_view_sends_it(
    world: Api, app, monkeypatch
):
    first, second = world.enroll("production", "a"), world.enroll("production", "b")
    old = current_etag(world, first)
    world.set_desired("production", "wine", 2, None)
    # The first agent to ask after the change reaches the view, which builds the manifest...
    built = world.get(manifest_path(first), token=first["token"], **{"If-None-Match": old})
    assert built.status_code == 200
    # ...and from then on the shortcut answers, with the view's bytes and headers.
    seen_by_view = []
    view = app.wsgi_app.app

    def counting_view(environ, start_response):
        seen_by_view.append(environ["PATH_INFO"])
        return view(environ, start_response)

    monkeypatch.setattr(app.wsgi_app, "app", counting_view)
    for headers in ({"If-None-Match": old}, {}):
        auth = {"Authorization": f"Bearer {second['token']}", **headers}
        through_shortcut = world.client.get(manifest_path(second), headers=auth)
        through_view = Client(view).get(manifest_path(second), headers=auth)
        assert through_shortcut.status_code == through_view.status_code == 200
        assert dict(through_shortcut.headers) == dict(through_view.headers)
        assert through_shortcut.data == through_view.data == built.data
    assert seen_by_view == []
    # A tag list (only the view parses those) still goes to the view.
    listed = world.client.get(
        manifest_path(second),
        headers={"Authorization": f"Bearer {second['token']}", "If-None-Match": f'{old}, "x"'},
    )
    assert listed.status_code == 200 and seen_by_view == [manifest_path(second)]
