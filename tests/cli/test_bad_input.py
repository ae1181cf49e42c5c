"""Every command refuses bad input with a non-zero exit and a message naming the problem, and
stores nothing: the registry, environments, history, tokens and artifact files are unchanged."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from common.cli import cli
from control_plane.app import create_app
from control_plane.cli.client import ClientFactory
from tests.cli.conftest import Cli, snapshot
from tests.support.api import Api

USAGE, API = 2, 1  # click's exit code for a bad argument; ClickException's for an API refusal

BAD_NAMES = {
    "dotdot": "../x",
    "empty": "",
    "65-chars": "a" * 65,
    "space": "has space",
    "non-ascii": "modèle",
    "upper-case": "Wine",
}

# Each place a command takes a name: (id, args with {} for the name, what the name is).
NAME_SLOTS = [
    ("model-push", ["model", "push", "{}", "{wine}"], "model name"),
    ("model-show", ["model", "show", "{}"], "model name"),
    ("env-create", ["env", "create", "{}"], "environment name"),
    ("env-set-env", ["env", "set", "{}", "wine", "1"], "environment name"),
    ("env-set-model", ["env", "set", "staging", "{}", "1"], "model name"),
    ("env-unset", ["env", "unset", "staging", "{}"], "model name"),
    ("env-show", ["env", "show", "{}"], "environment name"),
    ("env-history", ["env", "history", "{}"], "environment name"),
    ("env-promote", ["env", "promote", "{}", "wine"], "environment name"),
    ("env-rollback", ["env", "rollback", "staging", "{}"], "model name"),
    (
        "token-create",
        ["token", "create", "--role", "enrollment", "--env", "{}"],
        "environment name",
    ),
    ("status", ["status", "{}"], "environment name"),
]

NAME_CASES = [
    pytest.param(
        [arg.replace("{}", name) for arg in args],
        "admin",
        USAGE,
        f"invalid {what} {name!r}",
        id=f"{slot}-{label}",
    )
    for slot, args, what in NAME_SLOTS
    for label, name in BAD_NAMES.items()
]

PUSH = ["model", "push", "wine", "{wine}"]
# fmt: off
CASES = [
    # model push: JSON options are checked before anything is sent
    pytest.param([*PUSH, "--metadata", "{bad"], "admin", USAGE,
                 "Invalid value for '--metadata': not valid JSON", id="push-metadata-not-json"),
    pytest.param([*PUSH, "--metadata", "[1]"], "admin", USAGE,
                 "must be a JSON object, got an array", id="push-metadata-not-object"),
    pytest.param([*PUSH, "--metadata", "@{tmp}/missing.json"], "admin", USAGE,
                 "cannot read", id="push-metadata-file-missing"),
    pytest.param([*PUSH, "--input-example", "[{"], "admin", USAGE,
                 "Invalid value for '--input-example': not valid JSON", id="push-example-not-json"),
    pytest.param([*PUSH, "--input-example", "[1, 2]"], "admin", USAGE,
                 "non-empty array of objects", id="push-example-not-rows"),
    pytest.param([*PUSH, "--input-example", "[]"], "admin", USAGE,
                 "non-empty array of objects", id="push-example-empty"),
    pytest.param([*PUSH, "--input-example", '[{"alcohol": 1}, {"alcohol": "x"}]'], "admin", USAGE,
                 "feature 'alcohol' mixes integer and string", id="push-example-mixed-types"),
    pytest.param([*PUSH, "--format", "onnx"], "admin", USAGE,
                 "Invalid value for '--format'", id="push-unknown-format-flag"),
    pytest.param([*PUSH, "--metadata", '{"format": "onnx"}'], "admin", API,
                 "422 invalid: invalid field(s): metadata.format",
                 id="push-unknown-format-metadata"),
    pytest.param([*PUSH, "--metadata", '{"metrics": {"accuracy": "high"}}'], "admin", API,
                 "metadata.metrics.accuracy", id="push-metric-not-number"),
    pytest.param([*PUSH, "--metadata", '{"colour": "red"}'], "admin", API,
                 "metadata.colour", id="push-unknown-metadata-key"),
    pytest.param(["model", "push", "wine", "{tmp}/missing.joblib"], "admin", USAGE,
                 "does not exist", id="push-missing-file"),
    pytest.param(["model", "push", "wine", "{empty}"], "admin", API,
                 "the artifact is empty", id="push-empty-file"),
    pytest.param(PUSH, "viewer", API, "403 forbidden: a viewer token may not do this",
                 id="push-viewer"),
    pytest.param(PUSH, "wrong", API, "401 unauthenticated: invalid, expired or revoked token",
                 id="push-wrong-token"),
    pytest.param(PUSH, None, API, "401 unauthenticated: missing bearer token",
                 id="push-no-token"),
    # model list / show
    pytest.param(["model", "list"], "wrong", API, "401 unauthenticated", id="list-wrong-token"),
    pytest.param(["model", "show", "nope"], "admin", API, "404 not_found: model 'nope' not found",
                 id="show-unknown-model"),
    pytest.param(["model", "show", "wine", "9"], "admin", API,
                 "404 not_found: version 9 of model 'wine' not found", id="show-unknown-version"),
    pytest.param(["model", "show", "wine", "0"], "admin", USAGE, "0 is not in the range",
                 id="show-version-zero"),
    pytest.param(["model", "show", "wine", "two"], "admin", USAGE, "'two' is not a valid integer",
                 id="show-version-not-integer"),
    # env create / list
    pytest.param(["env", "create", "production"], "viewer", API, "403 forbidden",
                 id="create-viewer"),
    pytest.param(["env", "list"], "wrong", API, "401 unauthenticated", id="env-list-wrong-token"),
    # env set
    pytest.param(["env", "set", "nope", "wine", "1"], "admin", API,
                 "404 not_found: environment 'nope' not found", id="set-unknown-env"),
    pytest.param(["env", "set", "staging", "nope", "1"], "admin", API,
                 "404 not_found: model 'nope' not found", id="set-unknown-model"),
    pytest.param(["env", "set", "staging", "wine", "9"], "admin", API,
                 "404 not_found: model 'wine' has no version 9", id="set-unknown-version"),
    pytest.param(["env", "set", "staging", "wine", "1", "--shadow", "7"], "admin", API,
                 "model 'wine' has no version 7", id="set-unknown-shadow"),
    pytest.param(["env", "set", "staging", "wine", "1", "--shadow", "1"], "admin", API,
                 "422 invalid: shadow must differ from version", id="set-shadow-equals-version"),
    pytest.param(["env", "set", "staging", "wine", "2", "--if-match", "0"], "admin", API,
                 "412 stale_revision: revision 0 is stale; the current revision is 1",
                 id="set-stale-if-match"),
    pytest.param(["env", "set", "staging", "wine", "1"], "admin", API,
                 "409 conflict", id="set-changes-nothing"),
    pytest.param(["env", "set", "staging", "wine", "0"], "admin", USAGE, "0 is not in the range",
                 id="set-version-zero"),
    pytest.param(["env", "set", "staging", "wine", "2"], "viewer", API, "403 forbidden",
                 id="set-viewer"),
    # env unset / show / history
    pytest.param(["env", "unset", "staging", "nope"], "admin", API,
                 "404 not_found: model 'nope' is not deployed in 'staging'",
                 id="unset-not-deployed"),
    pytest.param(["env", "unset", "nope", "wine"], "admin", API,
                 "environment 'nope' not found", id="unset-unknown-env"),
    pytest.param(["env", "unset", "staging", "wine", "--if-match", "5"], "admin", API,
                 "412 stale_revision", id="unset-stale-if-match"),
    pytest.param(["env", "show", "nope"], "admin", API, "404 not_found: environment 'nope'",
                 id="show-unknown-env"),
    pytest.param(["env", "history", "nope"], "admin", API, "404 not_found: environment 'nope'",
                 id="history-unknown-env"),
    pytest.param(["env", "history", "staging", "--limit", "0"], "admin", USAGE,
                 "0 is not in the range", id="history-limit-zero"),
    # env promote / rollback
    pytest.param(["env", "promote", "staging", "wine"], "admin", API,
                 "409 conflict: no shadow version to promote", id="promote-no-shadow"),
    pytest.param(["env", "promote", "nope", "wine"], "admin", API,
                 "environment 'nope' not found", id="promote-unknown-env"),
    pytest.param(["env", "promote", "staging", "nope"], "admin", API,
                 "404 not_found: model 'nope' not found", id="promote-unknown-model"),
    pytest.param(["env", "rollback", "staging", "wine"], "admin", API,
                 "409 conflict: no previous primary version", id="rollback-no-previous"),
    pytest.param(["env", "rollback", "staging", "nope"], "admin", API,
                 "404 not_found: model 'nope' not found", id="rollback-unknown-model"),
    pytest.param(["env", "rollback", "staging", "wine"], "viewer", API, "403 forbidden",
                 id="rollback-viewer"),
    # token create
    pytest.param(["token", "create", "--role", "enrollment"], "admin", API,
                 "an enrollment token needs an environment", id="token-enrollment-without-env"),
    pytest.param(["token", "create", "--role", "enrollment", "--env", "nope"], "admin", API,
                 "404 not_found: environment 'nope' not found", id="token-unknown-env"),
    pytest.param(["token", "create", "--role", "viewer", "--max-uses", "3"], "admin", API,
                 "max_uses applies to enrollment tokens only", id="token-viewer-max-uses"),
    pytest.param(["token", "create", "--role", "admin", "--env", "staging"], "admin", API,
                 "environment applies to enrollment tokens only", id="token-admin-env"),
    pytest.param(["token", "create", "--role", "agent"], "admin", USAGE,
                 "Invalid value for '--role'", id="token-agent-role"),
    pytest.param(["token", "create", "--role", "viewer", "--expires-in", "0"], "admin", USAGE,
                 "0 is not in the range", id="token-expires-zero"),
    pytest.param(["token", "create", "--role", "viewer", "--expires-in", "999999999999"],
                 "admin", API, "expires_in", id="token-expires-too-far"),
    pytest.param(["token", "create", "--role", "viewer"], "viewer", API, "403 forbidden",
                 id="token-viewer-creates"),
    # token list / revoke
    pytest.param(["token", "list"], "viewer", API, "403 forbidden", id="token-list-viewer"),
    pytest.param(["token", "revoke", "tok_nope"], "admin", API,
                 "404 not_found: token 'tok_nope' not found", id="token-revoke-unknown"),
    pytest.param(["token", "revoke", "tok_nope"], "viewer", API, "403 forbidden",
                 id="token-revoke-viewer"),
    pytest.param(["token", "revoke"], "admin", USAGE, "Missing argument 'TOKEN_ID'",
                 id="token-revoke-no-id"),
    pytest.param(["token", "revoke", "{admin_id}"], "admin", API,
                 "409 conflict: {admin_id} is the last working admin token",
                 id="token-revoke-last-admin"),
    # status
    pytest.param(["status", "nope"], "admin", API, "404 not_found: environment 'nope' not found",
                 id="status-unknown-env"),
    pytest.param(["status", "staging"], "wrong", API, "401 unauthenticated",
                 id="status-wrong-token"),
]
# fmt: on
USAGE_CASES = [case for case in NAME_CASES + CASES if case.values[2] == USAGE]


@pytest.fixture(scope="module")
def world(tmp_path_factory, wine_model_bytes):
    """One app for the whole table: every case must leave it as it found it, which is checked.

    wine v1 and v2 are registered; staging runs wine v1 (revision 1); a viewer token exists.
    """
    app = create_app({"data_dir": tmp_path_factory.mktemp("bad-input") / "control-plane"})
    admin_token = app.extensions["tether"].new_admin_token
    api = Api(app.test_client(), admin_token)
    api.operator.push("wine", wine_model_bytes)
    api.operator.push("wine", wine_model_bytes)
    api.create_env("staging")
    assert api.set_desired("staging", "wine", 1).status_code == 200
    tokens = {"viewer": api.create_token("viewer"), "wrong": "tether_admin_not-a-real-token"}
    yield app, api, Cli(app, admin_token), tokens
    app.extensions["tether"].close()


def fill(args: list[str], tmp_path: Path, wine_model_file: Path) -> list[str]:
    """Put real paths in place of {wine}, {empty} and {tmp}."""
    empty = tmp_path / "empty.joblib"
    empty.write_bytes(b"")
    places = {"{wine}": str(wine_model_file), "{empty}": str(empty), "{tmp}": str(tmp_path)}
    for placeholder, value in places.items():
        args = [arg.replace(placeholder, value) for arg in args]
    return args


@pytest.mark.parametrize(("args", "token", "exit_code", "message"), NAME_CASES + CASES)
def test_bad_input_is_refused_and_stores_nothing(
    world, tmp_path, wine_model_file, args, token, exit_code, message
):
    app, api, tether, tokens = world
    args = fill(args, tmp_path, wine_model_file)
    listed = api.get("/api/v1/tokens").get_json()["tokens"]
    admin_id = next(token["id"] for token in listed if token["role"] == "admin")
    args = [arg.replace("{admin_id}", admin_id) for arg in args]
    message = message.replace("{admin_id}", admin_id)
    before = snapshot(api, app)

    result = tether.run(*args, token=tokens.get(token, token))

    assert result.exit_code == exit_code, result.output
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.output
    assert result.stdout == ""
    assert snapshot(api, app) == before


@pytest.mark.parametrize(("args", "token", "exit_code", "message"), USAGE_CASES)
def test_bad_arguments_are_refused_before_any_request(
    tmp_path, wine_model_file, args, token, exit_code, message
):
    sent: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(500)

    transport = httpx.MockTransport(record)
    result = CliRunner().invoke(
        cli,
        fill(args, tmp_path, wine_model_file),
        obj=ClientFactory(transport=transport),
        env={"TETHER_URL": "http://tether.test", "TETHER_TOKEN": "t"},
    )
    assert result.exit_code == exit_code and message in result.stderr
    assert sent == []
