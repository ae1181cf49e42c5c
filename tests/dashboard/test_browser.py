"""The dashboard in a real headless browser against a real `tether server`.

Needs Playwright (pip install playwright) and Debian's chromium (apt-get install chromium); the
browser binaries Playwright can download are never used. Set TETHER_SCREENSHOTS=docs/images to
refresh the documentation's screenshots.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from common.drift import ReferenceProfile
from tests.support.models import wine_frame
from tests.support.operator import Operator
from tests.support.processes import ServerProcess
from tests.support.reports import drift_report, shadow_report

pytestmark = pytest.mark.e2e

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_path() -> str | None:
    """Find Debian's chromium (or the one TETHER_CHROMIUM names)."""
    for candidate in (os.environ.get("TETHER_CHROMIUM"), "/usr/bin/chromium"):
        if candidate and Path(candidate).exists():
            return candidate
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="Playwright is not installed: pip install playwright"
    )
    executable = chromium_path()
    if executable is None:
        pytest.skip("no chromium to drive: apt-get install chromium (or set TETHER_CHROMIUM)")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[ServerProcess]:
    # A policy pass every second, so that its events show up while the test looks.
    data = tmp_path_factory.mktemp("dashboard") / "data"
    with ServerProcess(data, env={"TETHER_POLICY_INTERVAL": "1"}) as running:
        yield running


@pytest.fixture
def operator(server: ServerProcess) -> Iterator[BrowserWorld]:
    world = BrowserWorld.of(server)
    yield world
    world.close()


ZONE = {"zone": "eu-west-1a"}


class BrowserWorld(Operator):
    """The operator's helper, plus one simulated agent, for what the browser does not do."""

    def ok(self, response: httpx.Response) -> dict:
        assert response.is_success, (response.status_code, response.text)
        return response.json()

    def as_agent(self, agent: dict, path: str, body: dict) -> dict:
        headers = {"Authorization": f"Bearer {agent['token']}"}
        return self.ok(
            self.http.post(f"/api/v1/agents/{agent['agent_id']}{path}", json=body, headers=headers)
        )

    def heartbeat(self, agent: dict, revision: int, models: dict) -> None:
        body = {
            "hostname": agent["hostname"],
            "applied_revision": revision,
            "models": models,
            "agent_version": "0.1.0",
            "labels": ZONE,
        }
        self.as_agent(agent, "/heartbeat", body)

    def wait_for_event(self, kind: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            events = self.ok(self.http.get("/api/v1/events"))["events"]
            if any(event["kind"] == kind for event in events):
                return
            time.sleep(0.2)
        raise AssertionError(f"no {kind} event within {timeout} s")


def test_sign_in_converge_drift_and_promote(
    browser,
    server: ServerProcess,
    operator: BrowserWorld,
    wine_model_bytes: bytes,
    wine_profile: ReferenceProfile,
):
    for env in ("staging", "production"):
        operator.ok(operator.http.put(f"/api/v1/environments/{env}", json={}))
    operator.push(
        "wine",
        wine_model_bytes,
        {
            "code_revision": "3f2c9ab",
            "training_data_fingerprint": "sha256:7be1…",
            "metrics": {"accuracy": 0.972},
        },
        profile=wine_profile,
    )
    operator.push(
        "wine",
        wine_model_bytes + b"v2",
        {"code_revision": "9d1e07c", "metrics": {"accuracy": 0.978}},
        profile=wine_profile,
    )
    for env in ("staging", "production"):
        operator.ok(
            operator.http.put(
                f"/api/v1/environments/{env}/desired/wine",
                json={"version": 1, "reason": "first deployment"},
            )
        )
    agents = [operator.enroll("production", f"serve-{n}", ZONE) for n in (1, 2, 3)]
    staging = operator.enroll("staging", "stage-1", ZONE)
    operator.heartbeat(staging, operator.revision("staging"), {"wine": {"serving": 1}})
    for agent in agents:
        operator.heartbeat(agent, operator.revision("production"), {"wine": {"serving": 1}})
    policy = {"drift": {"consecutive": 2}, "promote": {"min_samples": 300, "min_agreement": 0.95}}
    operator.ok(operator.http.put("/api/v1/environments/production/policy", json=policy))
    _report_windows(operator, agents[:2], wine_profile)

    page = browser.new_page(viewport={"width": 1360, "height": 900})
    try:
        # Signing in: a bad token is refused with a message; the admin token gets in.
        page.goto(f"{server.url}/environments/production")
        assert "/login" in page.url
        page.fill("#token", "tether_admin_not-a-real-token-at-all-000")
        page.click("button[type=submit]")
        assert "not valid" in page.inner_text(".error")
        page.fill("#token", server.admin_token)
        page.click("button[type=submit]")
        page.wait_for_url("**/environments/production")
        assert page.inner_text("#fleet .count-converged") == "3 converged"

        # Set a shadow from the page: the fleet lags until the agents report it, then converges.
        page.click("details.set-desired summary")
        page.select_option("#set-desired select[name=model]", "wine")
        page.fill("#set-desired input[name=version]", "1")
        page.fill("#set-desired input[name=shadow]", "2")
        page.fill("#set-desired input[name=reason]", "shadow v2 on live traffic")
        page.click("#set-desired button[type=submit]")
        assert page.inner_text("h1") == "Set the desired state: wine in production?"
        page.click("#confirm-form button[type=submit]")
        page.wait_for_url("**/environments/production")
        assert "with shadow v2" in page.inner_text(".flash")
        assert page.inner_text("#fleet .count-lagging") == "3 lagging"
        revision = operator.revision("production")
        for agent in agents:
            operator.heartbeat(agent, revision, {"wine": {"serving": 1, "shadow": 2}})
        _report_shadow(operator, agents[:2])
        operator.wait_for_event("drift_alert")
        operator.wait_for_event("ready_to_promote")
        page.reload()
        assert page.inner_text("#fleet .count-converged") == "3 converged"
        assert page.locator("#events tr.event-drift_alert").count() == 1

        # The drift plots render with data, and a feature's distribution shows on a click.
        plots = page.locator(".drift-plots svg.chart")
        assert plots.count() == len(wine_profile.features)
        assert int(plots.first.get_attribute("data-points")) == 6
        assert page.locator(".drift-plots circle.marked").count() > 0
        page.click(".drift-plots a[data-feature=proline]")
        assert page.get_attribute(".distribution", "data-feature") == "proline"
        assert page.locator(".distribution rect.bar.current").count() >= 10
        assert int(page.get_attribute(".shadow-plots svg.chart", "data-points")) > 0
        _screenshots(page, server)

        # Promote the shadow from the page, with a reason and a confirmation.
        page.goto(f"{server.url}/environments/production")
        promote = page.locator("form[data-action=promote]")
        promote.locator("input[name=reason]").fill("agreement above 97% for an hour")
        promote.locator("button").click()
        assert "Promote: wine in production?" in page.inner_text("h1")
        page.click("#confirm-form button[type=submit]")
        page.wait_for_url("**/environments/production")
        assert page.inner_text("tr[data-model=wine] td.primary") == "v2"
        assert "agreement above 97% for an hour" in page.inner_text("#history")
        desired = operator.ok(operator.http.get("/api/v1/environments/production/desired"))
        assert desired["models"]["wine"] == {"version": 2, "shadow": None}
    finally:
        page.close()


def _report_windows(operator: BrowserWorld, agents: list[dict], profile: ReferenceProfile) -> None:
    """Six five-minute windows per agent; the inputs of the newest three drift."""
    features, _ = wine_frame()
    now = datetime.now(UTC)
    for n, agent in enumerate(agents):
        batch = []
        for k in range(6):
            rows = features.sample(80, random_state=10 * k + n)
            if k >= 3:  # most inputs shift: dataset drift
                rows = rows * 1.3 + rows.std() * 0.3
            end = now - timedelta(minutes=5 * (5 - k), seconds=n)
            batch.append(drift_report(profile, rows, "wine", 1, end=end, minutes=5))
        operator.as_agent(agent, "/reports", {"reports": batch})


def _report_shadow(operator: BrowserWorld, agents: list[dict]) -> None:
    now = datetime.now(UTC)
    for n, agent in enumerate(agents):
        batch = [
            shadow_report(
                "wine",
                1,
                2,
                shadowed=400,
                agreed=392 - k - n,
                end=now - timedelta(minutes=5 * (5 - k), seconds=n),
                primary_p95=3.1 + 0.2 * k,
                shadow_p95=3.4 + 0.3 * k,
            )
            for k in range(6)
        ]
        operator.as_agent(agent, "/reports", {"reports": batch})


def _screenshots(page, server: ServerProcess) -> None:  # type: ignore[no-untyped-def]
    """Save the main pages for the docs when TETHER_SCREENSHOTS names a folder."""
    folder = os.environ.get("TETHER_SCREENSHOTS")
    if not folder:
        return
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    page.locator("#model-wine").screenshot(path=str(target / "dashboard-drift.png"))
    page.goto(f"{server.url}/")
    page.screenshot(path=str(target / "dashboard-overview.png"), full_page=True)
    page.goto(f"{server.url}/environments/production")
    page.screenshot(path=str(target / "dashboard-environment.png"))
