"""Signing in and out: tokens checked like the API's, a cookie that hides the token, CSRF."""

from __future__ import annotations

import base64
import stat
import zlib
from pathlib import Path

import pytest

from control_plane.app import create_app
from control_plane.context import get_store
from tests.dashboard.conftest import csrf_of, sign_in
from tests.support.api import Api


def session_cookie(client) -> str | None:
    cookie = client.get_cookie("tether_session")
    return None if cookie is None else cookie.value


def cookie_payload(value: str) -> bytes:
    """Decode the readable part of Flask's signed cookie (it is signed, not encrypted)."""
    compressed = value.startswith(".")
    data = value.lstrip(".").split(".")[0]
    raw = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
    return zlib.decompress(raw) if compressed else raw


def test_sign_in_goes_where_it_was_asked_and_sets_a_strict_cookie(client, admin_token):
    assert client.get("/agents").headers["Location"] == "/login?next=/agents"
    form = client.get("/login?next=/agents")
    response = client.post(
        "/login",
        data={
            "token": admin_token,
            "next": "/agents",
            "csrf_token": csrf_of(form.get_data(as_text=True)),
        },
    )
    assert response.status_code == 302 and response.headers["Location"] == "/agents"
    header = response.headers["Set-Cookie"]
    assert "HttpOnly" in header and "SameSite=Lax" in header
    assert "Secure" not in header  # plain http here
    assert client.get("/agents").status_code == 200
    # The cookie is signed, not encrypted: the token inside it is sealed as well.
    payload = cookie_payload(session_cookie(client))
    assert admin_token.encode() not in payload and b"tether_admin_" not in payload


def test_the_cookie_is_secure_over_https_or_when_configured(tmp_path: Path):
    for config, base in (({}, "https://tether.example"), ({"session_cookie_secure": True}, None)):
        app = create_app({"data_dir": tmp_path / str(len(config)), **config})
        client = app.test_client()
        kwargs = {"base_url": base} if base else {}
        form = client.get("/login", **kwargs)
        token = app.extensions["tether"].new_admin_token
        response = client.post(
            "/login",
            data={"token": token, "csrf_token": csrf_of(form.get_data(as_text=True))},
            **kwargs,
        )
        assert "Secure" in response.headers["Set-Cookie"]
        app.extensions["tether"].close()


@pytest.mark.parametrize(
    ("token", "status", "message"),
    [
        ("", 401, "Paste a viewer or admin token."),
        ("tether_admin_wrongwrongwrongwrongwrong", 401, "That token is not valid"),
        ("enrollment", 403, "cannot sign in here: use a viewer or admin token"),
    ],
)
def test_a_bad_token_is_refused_with_a_clear_message(client, api: Api, token, status, message):
    api.create_env("production")
    if token == "enrollment":
        token = api.create_token("enrollment", environment="production")
    response = sign_in(client, token)
    assert response.status_code == status
    assert message in response.get_data(as_text=True)
    assert client.get("/").status_code == 302


def test_signing_out_ends_the_session(admin_browser):
    page = admin_browser.get("/").get_data(as_text=True)
    response = admin_browser.post("/logout", data={"csrf_token": csrf_of(page)})
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    assert admin_browser.get("/").status_code == 302


def test_a_revoked_token_ends_its_session_at_the_next_page(app, api: Api, client):
    viewer = api.create_token("viewer")
    sign_in(client, viewer)
    assert client.get("/models").status_code == 200
    with app.app_context():
        store = get_store()
        store.db.execute("UPDATE tokens SET revoked = 1 WHERE role = 'viewer'")
        store.db.conn.commit()
    response = client.get("/models")
    assert response.headers["Location"] == "/login?next=/models"
    again = client.get("/login?next=/models")
    assert "Your session ended: the token was revoked" in again.get_data(as_text=True)
    assert session_cookie(client) is None or b"token" not in cookie_payload(session_cookie(client))


def test_sign_in_needs_its_csrf_token(client, admin_token):
    response = client.post("/login", data={"token": admin_token})
    assert response.status_code == 400
    assert "CSRF" in response.get_data(as_text=True)
    assert client.get("/").status_code == 302


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil"])
def test_sign_in_never_redirects_off_site(client, admin_token, target):
    form = client.get("/login")
    response = client.post(
        "/login",
        data={"token": admin_token, "next": target, "csrf_token": csrf_of(form.get_data(True))},
    )
    assert response.headers["Location"] == "/"


def test_the_session_key_is_private_and_survives_a_restart(tmp_path: Path):
    data = tmp_path / "cp"
    first = create_app({"data_dir": data})
    client = first.test_client()
    assert sign_in(client, first.extensions["tether"].new_admin_token).status_code == 302
    key = data / "session.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and len(key.read_text().strip()) == 64
    first.extensions["tether"].close()
    second = create_app({"data_dir": data})
    cookie = client.get_cookie("tether_session")
    again = second.test_client()
    again.set_cookie("tether_session", cookie.value)
    assert again.get("/").status_code == 200
    second.extensions["tether"].close()


def test_api_calls_get_no_session_cookie(client, admin_token):
    response = client.get("/api/v1/models", headers={"Authorization": f"Bearer {admin_token}"})
    assert "Set-Cookie" not in response.headers and "Cookie" not in response.headers.get("Vary", "")
