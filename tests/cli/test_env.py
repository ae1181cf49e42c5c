"""`tether env ...`, `tether status` and `tether token create` against the in-process app."""

from __future__ import annotations

import re

import pytest


@pytest.fixture
def wine(api, wine_model_bytes) -> None:
    """Three versions of wine in the registry."""
    for _ in range(3):
        api.operator.push("wine", wine_model_bytes)


def rows(output: str) -> list[list[str]]:
    return [line.split() for line in output.splitlines()]


def test_create_and_list(tether, api):
    assert "No environments yet" in tether.run("env", "list", ok=True).stdout
    result = tether.run("env", "create", "staging", "--description", "pre-prod", ok=True)
    assert result.stdout == "Created environment staging (revision 0).\n"
    again = tether.run("env", "create", "staging", ok=True)
    assert again.stdout == "Environment staging already exists (revision 0).\n"
    assert tether.json("env", "create", "production")["name"] == "production"

    listed = rows(tether.run("env", "list", ok=True).stdout)
    assert listed[0] == ["ENVIRONMENT", "REVISION", "UPDATED", "DESCRIPTION"]
    assert [row[:2] for row in listed[1:]] == [["production", "0"], ["staging", "0"]]
    assert listed[2][-1] == "pre-prod"
    assert tether.json("env", "list") == api.get("/api/v1/environments").get_json()


def test_set_show_promote_rollback_unset_history(tether, api, wine):
    api.create_env("staging")
    result = tether.run(
        "env", "set", "staging", "wine", "1", "--shadow", "2", "--reason", "canary", ok=True
    )
    assert result.stdout == "Set wine in staging: now v1 (shadow v2), revision 1.\n"

    shown = tether.run("env", "show", "staging", ok=True).stdout
    assert shown.splitlines()[0] == "Environment staging, revision 1"
    assert ["wine", "v1", "v2"] in rows(shown)
    desired = tether.json("env", "show", "staging")
    assert desired == {
        "environment": "staging",
        "revision": 1,
        "models": {"wine": {"version": 1, "shadow": 2}},
    }

    assert tether.json("env", "promote", "staging", "wine", "--reason", "agrees")["models"] == {
        "wine": {"version": 2, "shadow": None}
    }
    rolled = tether.run("env", "rollback", "staging", "wine", ok=True).stdout
    assert rolled == "Rolled back wine in staging: now v1, revision 3.\n"
    # --if-match at the current revision goes through.
    assert tether.json("env", "set", "staging", "wine", "3", "--if-match", "3")["revision"] == 4
    unset = tether.run("env", "unset", "staging", "wine", "--reason", "retired", ok=True).stdout
    assert unset == "Unset wine in staging: now not deployed, revision 5.\n"
    assert "No models deployed" in tether.run("env", "show", "staging", ok=True).stdout

    history = tether.json("env", "history", "staging")
    assert history == api.get("/api/v1/environments/staging/history").get_json()
    assert [(e["revision"], e["action"], e["reason"]) for e in history["entries"]] == [
        (5, "unset", "retired"),
        (4, "set", ""),
        (3, "rollback", ""),
        (2, "promote", "agrees"),
        (1, "set", "canary"),
    ]
    table = rows(tether.run("env", "history", "staging", "--limit", "2", ok=True).stdout)
    assert table[0] == ["REVISION", "AT", "ACTOR", "ACTION", "MODEL", "BEFORE", "AFTER", "REASON"]
    assert len(table) == 3 and table[1][0] == "5" and table[2][0] == "4"
    assert table[1][-3:] == ["v3", "-", "retired"]


def test_history_of_a_new_environment(tether, api):
    api.create_env("staging")
    assert "No changes to staging yet." in tether.run("env", "history", "staging", ok=True).stdout


def test_status_shows_each_agent_against_the_desired_state(tether, api, wine):
    api.create_env("staging")
    assert "No agents enrolled in staging yet." in tether.run("status", "staging", ok=True).stdout
    api.set_desired("staging", "wine", 2, 3)
    agents = [api.enroll("staging", hostname=f"host-{n}") for n in (1, 2)]
    beats = [{"serving": 2, "shadow": 3}, {"serving": 1, "status": "failed", "error": "boom"}]
    for agent, actual in zip(agents, beats, strict=True):
        response = api.send(
            "POST",
            f"/api/v1/agents/{agent['agent_id']}/heartbeat",
            {"applied_revision": 1, "models": {"wine": actual}},
            token=agent["token"],
        )
        assert response.status_code == 200, response.get_json()

    report = tether.json("status", "staging")
    assert report == api.get("/api/v1/environments/staging/status").get_json()
    assert (report["converged"], report["total"]) == (1, 2)

    shown = tether.run("status", "staging", ok=True).stdout
    assert "Environment staging, revision 1: 1/2 agent(s) converged" in shown
    lines = {line.split()[1]: line for line in shown.splitlines()[3:]}
    assert lines["host-1"].count("v2 (shadow v3)") == 2 and lines["host-1"].endswith("converged")
    assert re.search(r"wine\s+v2 \(shadow v3\)\s+v1\s+failed: boom$", lines["host-2"])


def test_token_create_prints_only_the_secret_on_stdout(tether, api):
    result = tether.run("token", "create", "--role", "viewer", "--description", "grafana", ok=True)
    secret = result.stdout.strip()
    assert secret.startswith("tether_viewer_") and "\n" not in secret
    assert "Created viewer token tok_" in result.stderr and "no expiry" in result.stderr
    assert api.get("/api/v1/models", token=secret).status_code == 200
    assert api.send("PUT", "/api/v1/environments/x", {}, token=secret).status_code == 403


def test_token_create_enrollment_json(tether, api):
    api.create_env("staging")
    created = tether.json(
        "token",
        "create",
        "--role",
        "enrollment",
        "--env",
        "staging",
        "--max-uses",
        "2",
        "--expires-in",
        "3600",
    )
    assert created["role"] == "enrollment" and created["environment"] == "staging"
    assert created["uses_left"] == 2 and created["expires_at"] is not None
    enrolled = api.send("POST", "/api/v1/agents/enroll", {"hostname": "h"}, token=created["token"])
    assert enrolled.status_code == 201
    listed = {token["id"] for token in api.get("/api/v1/tokens").get_json()["tokens"]}
    assert created["id"] in listed


def test_token_list_and_revoke(tether, api):
    created = tether.json("token", "create", "--role", "viewer", "--description", "grafana")
    listed = rows(tether.run("token", "list", ok=True).stdout)
    assert listed[0][:3] == ["ID", "ROLE", "SCOPE"]
    assert [created["id"], "viewer", "-", "never", "-"] in [row[:5] for row in listed[1:]]
    assert {t["id"] for t in tether.json("token", "list")["tokens"]} == {
        t["id"] for t in api.get("/api/v1/tokens").get_json()["tokens"]
    }
    assert api.get("/api/v1/models", token=created["token"]).status_code == 200

    result = tether.run("token", "revoke", created["id"], ok=True)
    assert result.stdout == f"Revoked viewer token {created['id']}.\n"
    assert api.get("/api/v1/models", token=created["token"]).status_code == 401
    assert created["id"] not in tether.run("token", "list", ok=True).stdout


def test_token_revoke_json_names_the_agent(tether, api):
    api.create_env("staging")
    agent = api.enroll("staging")
    agent_token_id = next(
        t["id"]
        for t in tether.json("token", "list")["tokens"]
        if t["agent_id"] == agent["agent_id"]
    )
    revoked = tether.json("token", "revoke", agent_token_id)
    assert (revoked["role"], revoked["agent_id"]) == ("agent", agent["agent_id"])
    manifest = api.get(f"/api/v1/agents/{agent['agent_id']}/manifest", token=agent["token"])
    assert manifest.status_code == 401
