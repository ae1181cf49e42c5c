"""Admins set, promote and roll back from the page: confirmed, checked like the REST calls."""

from __future__ import annotations

import re

import pytest

from control_plane.context import get_store
from control_plane.policy_runner import run_policies
from tests.dashboard.conftest import csrf_of, sign_in
from tests.support.api import Api
from tests.support.reports import shadow_report

ACTIONS = "/environments/production/actions"


@pytest.fixture
def deployed(api: Api, wine_model_bytes: bytes) -> Api:
    """Production runs wine v1 with v2 in shadow."""
    api.create_env("production")
    api.operator.push("wine", wine_model_bytes)
    api.operator.push("wine", wine_model_bytes + b"2")
    assert api.set_desired("production", "wine", 1, 2).status_code == 200
    return api


def desired(api: Api) -> dict:
    return api.get("/api/v1/environments/production/desired").get_json()


def page_csrf(client) -> str:
    return csrf_of(client.get("/environments/production").get_data(as_text=True))


def act(client, confirm: bool = True, **fields):
    """Post an action as the page's form does, then confirm it as the confirmation page does."""
    data = {"csrf_token": page_csrf(client), **fields}
    preview = client.post(ACTIONS, data=data)
    if not confirm or preview.status_code != 200:
        return preview
    page = preview.get_data(as_text=True)
    hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page))
    return client.post(ACTIONS, data=hidden)


def test_promote_from_the_page_changes_the_state_and_logs_the_reason(deployed, admin_browser):
    preview = act(admin_browser, confirm=False, action="promote", model="wine", reason="looks good")
    page = preview.get_data(as_text=True)
    assert preview.status_code == 200 and "Promote: wine in production?" in page
    assert re.search(r"Now</th>\s*<td><span class=\"ver\">v1</span>", page)
    assert re.search(r"After</th>\s*<td><span class=\"ver\">v2</span>", page)
    assert desired(deployed)["models"]["wine"] == {"version": 1, "shadow": 2}  # not yet

    done = act(admin_browser, action="promote", model="wine", reason="agreement 99.1% over 2k")
    assert done.status_code == 303 and done.headers["Location"] == "/environments/production"
    assert desired(deployed)["models"]["wine"] == {"version": 2, "shadow": None}
    newest = deployed.get("/api/v1/environments/production/history").get_json()["entries"][0]
    assert newest["action"] == "promote" and newest["reason"] == "agreement 99.1% over 2k"
    assert newest["actor"].startswith("admin:tok_")
    shown = admin_browser.get("/environments/production").get_data(as_text=True)
    assert "Promote: wine now serves v2 (revision 2)." in shown
    assert "agreement 99.1% over 2k" in shown


def test_set_and_roll_back_from_the_page(deployed, admin_browser):
    done = act(admin_browser, action="set", model="wine", version="2", shadow="", reason="v2 only")
    assert done.status_code == 303
    assert desired(deployed)["models"]["wine"] == {"version": 2, "shadow": None}
    page = admin_browser.get("/environments/production").get_data(as_text=True)
    assert "Roll back to v1" in page
    back = act(admin_browser, action="rollback", model="wine", reason="errors up")
    assert back.status_code == 303
    assert desired(deployed)["models"]["wine"] == {"version": 1, "shadow": None}


def test_a_viewer_may_not_post(deployed, viewer_browser_plain):
    response = act(viewer_browser_plain, action="promote", model="wine", reason="sneaky")
    assert response.status_code == 403
    assert desired(deployed)["models"]["wine"] == {"version": 1, "shadow": 2}


def test_a_post_without_its_csrf_token_is_refused(deployed, admin_browser):
    data = {"action": "promote", "model": "wine", "reason": "x", "confirmed": "yes"}
    response = admin_browser.post(ACTIONS, data={**data, "revision": "1"})
    assert response.status_code == 400 and "CSRF" in response.get_data(as_text=True)
    wrong = admin_browser.post(ACTIONS, data={**data, "revision": "1", "csrf_token": "forged"})
    assert wrong.status_code == 400
    assert desired(deployed)["models"]["wine"] == {"version": 1, "shadow": 2}


@pytest.mark.parametrize(
    ("fields", "status", "message"),
    [
        ({"action": "set", "version": "9"}, 404, "has no version 9"),
        ({"action": "set", "version": "2", "shadow": "2"}, 422, "shadow must differ"),
        ({"action": "set", "version": "two"}, 422, "version must be a whole number"),
        ({"action": "set", "version": ""}, 422, "version"),
        ({"action": "promote", "reason": ""}, 422, "Give a reason"),
        ({"action": "promote", "reason": "x" * 2001}, 422, "reason"),
        ({"action": "rollback"}, 409, "no previous primary"),
        ({"action": "promote", "model": "ghost"}, 404, "model &#39;ghost&#39; not found"),
        ({"action": "explode"}, 400, "Unknown action"),
    ],
)
def test_the_rest_api_checks_apply(deployed, admin_browser, fields, status, message):
    data = {"model": "wine", "reason": "because", **fields}
    response = act(admin_browser, confirm=False, **data)
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    assert message in response.get_data(as_text=True)
    assert desired(deployed)["revision"] == 1


def test_a_change_in_between_refuses_the_confirmation(deployed, admin_browser):
    preview = act(admin_browser, confirm=False, action="promote", model="wine", reason="go")
    hidden = dict(
        re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', preview.get_data(True))
    )
    assert deployed.set_desired("production", "wine", 1, None).status_code == 200
    response = admin_browser.post(ACTIONS, data=hidden)
    assert response.status_code == 412 and "changed while you were confirming" in response.get_data(
        as_text=True
    )
    assert desired(deployed)["models"]["wine"] == {"version": 1, "shadow": None}


def test_scripts_post_with_a_bearer_token_and_no_csrf(deployed, client, admin_token):
    response = client.post(
        ACTIONS,
        data={
            "action": "promote",
            "model": "wine",
            "reason": "ci",
            "confirmed": "yes",
            "revision": "1",
        },
        headers={"Authorization": f"Bearer {admin_token}"},
    )
    assert response.status_code == 303
    assert desired(deployed)["models"]["wine"]["version"] == 2


def test_automatic_actions_stand_out(app, deployed, admin_browser):
    policy = {"promote": {"auto": True, "min_samples": 100, "min_agreement": 0.9}}
    assert deployed.send("PUT", "/api/v1/environments/production/policy", policy).status_code == 200
    agent = deployed.enroll("production")
    report = shadow_report("wine", 1, 2, shadowed=500, agreed=495)
    deployed.send(
        "POST",
        f"/api/v1/agents/{agent['agent_id']}/reports",
        {"reports": [report]},
        token=agent["token"],
    )
    with app.app_context():
        assert run_policies(get_store(), app.extensions["tether"].artifacts)
    page = admin_browser.get("/environments/production").get_data(as_text=True)
    row = re.search(r'<tr class="automatic">(.*?)</tr>', page, re.S)
    assert row and "policy:promote" in row.group(1) and "automatic" in row.group(1)
    events = admin_browser.get("/events").get_data(as_text=True)
    assert 'class="event-promotion automatic"' in events


@pytest.fixture
def viewer_browser_plain(app, api: Api):
    client = app.test_client()
    assert sign_in(client, api.create_token("viewer")).status_code == 302
    return client
