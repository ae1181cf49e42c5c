"""Every page, as a viewer and as an admin, shows the fleet's real state."""

from __future__ import annotations

import re

import pytest

from control_plane.app import create_app
from tests.dashboard.conftest import Fleet, build_fleet
from tests.support.api import Api

PAGES = ["/", "/environments", "/environments/production", "/agents", "/models", "/events"]


def text(response) -> str:
    assert response.status_code == 200, response.get_data(as_text=True)[:2000]
    return response.get_data(as_text=True)


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """One control plane for the module: these tests only read."""
    application = create_app({"data_dir": tmp_path_factory.mktemp("pages") / "control-plane"})
    yield application
    application.extensions["tether"].close()


@pytest.fixture(scope="module")
def fleet(app, wine_model_bytes: bytes, wine_profile) -> Fleet:
    api = Api(app.test_client(), app.extensions["tether"].new_admin_token)
    return build_fleet(api, wine_model_bytes, wine_profile)


@pytest.fixture(params=["viewer", "admin"])
def browser(request, fleet: Fleet, admin_browser, viewer_browser):
    return viewer_browser if request.param == "viewer" else admin_browser


@pytest.mark.parametrize("path", PAGES)
def test_pages_send_strangers_to_sign_in(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")


def test_overview(browser):
    page = text(browser.get("/"))
    assert re.search(r'data-env="production".*?<strong>production</strong>', page, re.S)
    assert "staging" in page and "nothing deployed" in page
    # One agent converged, one failed, one never heard from.
    for state, count in {"converged": 1, "lagging": 0, "failed": 1, "stale": 1}.items():
        assert f'data-state="{state}">{count} {state}</span>' in page
    assert 'data-verdict="drift"' in page  # the newest windows drifted
    # 2 agents x 6 windows x 200 shadowed, of which 196 - k agreed: 2322 / 2400.
    assert "96.75%" in page and "of 2400" in page
    assert 'shadow <span class="ver">v2</span>' in page  # the audit log's newest change


def test_environments(browser):
    page = text(browser.get("/environments"))
    row = re.search(r'<tr data-model="wine">(.*?)</tr>', page, re.S).group(1)
    assert '<span class="ver">v1</span>' in row and '<span class="ver">v2</span>' in row
    assert "1 converged" in row and "1 failed" in row and "1 stale" in row
    assert "dataset drift" in row and "96.75%" in row


def test_environment_page_plots_drift_and_shadow(browser, wine_profile):
    page = text(browser.get("/environments/production"))
    plots = re.findall(r'<a class="plot[^"]*" data-feature="([^"]+)"', page)
    assert plots == list(wine_profile.features)
    assert page.count('data-points="6"') >= len(plots)  # six fleet windows each
    assert "circle" in page and "marked" in page  # drifted windows stand out
    assert '<div class="distribution" data-feature=' in page
    assert "Agreement of v2 with v1" in page and "p95 latency, ms" in page
    assert "smoke_test: smoke test failed" in page  # host-b's error
    assert 'data-state="stale"' in page


def test_distribution_of_a_chosen_feature_and_window(browser, wine_profile):
    query = "model=wine&feature=proline&window=5&bins=deciles"
    page = text(browser.get(f"/environments/production?{query}"))
    chart = re.search(r'<div class="distribution" data-feature="proline">(.*?)</div>', page, re.S)
    assert chart, "no distribution of proline"
    # Window 5 is the oldest, not shifted: ten decile bins, nothing outside the reference range.
    assert chart.group(1).count('class="bar current"') == 10
    assert chart.group(1).count('class="bar reference"') == 10
    fine = text(browser.get("/environments/production?model=wine&feature=proline&bins=fine"))
    bars = re.search(r'data-feature="proline">(.*?)</div>', fine, re.S).group(1)
    assert bars.count('class="bar current"') > 10


def test_agents(browser, fleet: Fleet):
    page = text(browser.get("/agents"))
    for name, state in (("host-a", "converged"), ("host-b", "failed"), ("host-c", "stale")):
        agent_id = fleet.agents[name]["agent_id"]
        assert f'class="agent state-row-{state}" data-agent="{agent_id}"' in page
    assert "zone=eu-1" in page and "never" in page  # host-c was never seen
    assert "smoke_test: smoke test failed: shape (1, 12)" in page


def test_models(browser):
    page = text(browser.get("/models"))
    v1 = re.search(r'<tr data-version="1">(.*?)</tr>', page, re.S).group(1)
    v2 = re.search(r'<tr data-version="2">(.*?)</tr>', page, re.S).group(1)
    assert "production · primary" in v1 and "production · shadow" in v2
    assert "3f2c9ab" in v1 and "sha256:wine-2024-05" in v1 and "9d1e07c" in v2
    assert "accuracy" in v1 and "0.972" in v1 and "team=vision" in v1


def test_events_show_the_audit_log(browser):
    page = text(browser.get("/events?environment=production"))
    assert page.count("<tr class=") >= 2
    assert "set" in page and "admin:tok_" in page


def test_viewers_see_no_write_forms(viewer_browser, admin_browser):
    viewer = text(viewer_browser.get("/environments/production"))
    admin = text(admin_browser.get("/environments/production"))
    assert 'name="action"' not in viewer and "Set a model" not in viewer
    assert 'data-action="promote"' in admin and 'id="set-desired"' in admin


def test_scripts_use_a_bearer_header(client, fleet: Fleet, admin_token):
    viewer = {"Authorization": f"Bearer {fleet.viewer}"}
    assert "production" in text(client.get("/environments", headers=viewer))
    assert "Set-Cookie" not in client.get("/agents", headers=viewer).headers
    bad = client.get("/environments", headers={"Authorization": "Bearer tether_viewer_nope"})
    assert bad.status_code == 401 and "invalid, expired or revoked" in bad.get_data(as_text=True)
    agent = {"Authorization": f"Bearer {fleet.agents['host-a']['token']}"}
    refused = client.get("/", headers=agent)
    assert refused.status_code == 403 and "cannot use the dashboard" in refused.get_data(True)


@pytest.mark.parametrize(
    ("path", "status"),
    [("/environments/nowhere", 404), ("/environments/Not..Valid", 422)],
)
def test_bad_environments_answer_with_a_page(admin_browser, fleet: Fleet, path, status):
    response = admin_browser.get(path)
    assert response.status_code == status
    assert response.mimetype == "text/html"


def test_pages_are_not_cached_and_carry_a_content_security_policy(admin_browser):
    response = admin_browser.get("/")
    assert response.headers["Cache-Control"] == "no-store"
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    css = admin_browser.get("/dashboard/static/dashboard.css")
    assert css.status_code == 200 and b"svg .threshold" in css.data
    css.close()
