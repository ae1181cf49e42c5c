"""Schemathesis with every check, as `schemathesis run --checks all` runs them, over real HTTP.

The same engine as the command line, with its examples, coverage and fuzzing phases, against
every documented operation: a missing body, a value of another type, a name outside the pattern
must be refused, and a request valid by the schema must be accepted, or refused only for a rule
across fields that JSON Schema cannot state ("shadow must differ from version"): each such rule
is a sentence in /openapi.json, and the refusal is that very sentence.

The app is served by werkzeug in this process, not gunicorn: gunicorn answers a request line over
4 KiB with 414 before the app sees it (tests/hostile/test_fuzz_api.py allows for that), and here
every answer must be the app's.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from schemathesis.engine import Status, events
from schemathesis.specs.openapi.checks import positive_data_acceptance
from werkzeug.serving import WSGIRequestHandler, make_server

from common.reports import DRIFT_NEEDS_BODY, SHADOW_NEEDS_BODY, WINDOW_IN_ORDER
from common.schemas import ENROLLMENT_NEEDS_ENVIRONMENT, ENROLLMENT_ONLY, SHADOW_DIFFERS
from control_plane.api.models import PROFILE_RULE
from control_plane.app import create_app
from tests.hostile.conftest import World, seed

pytestmark = pytest.mark.e2e

EXAMPLES = 10  # per operation and phase: some 3,000 requests, 30-40 s on a shared core
SEED = 20261204  # the same requests every run: a failure here reproduces
# schemathesis' own list for negative_data_rejection, and 413: a body over the size limit (a
# 10,001-row input schema) is refused as too large.
REFUSALS = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"]
REFUSALS.append("5xx")  # a server error is not_a_server_error's to report
# Rules across fields: the server's refusal and the schema's description say the same sentence.
STATED_RULES = {
    SHADOW_DIFFERS,
    ENROLLMENT_NEEDS_ENVIRONMENT,
    ENROLLMENT_ONLY.format(field="environment"),
    ENROLLMENT_ONLY.format(field="max_uses"),
    DRIFT_NEEDS_BODY,
    SHADOW_NEEDS_BODY,
    WINDOW_IN_ORDER,
    PROFILE_RULE,
}


class _Quiet(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass  # thousands of requests; a failure shows its own


@dataclass(frozen=True)
class Served:
    """The app on a loopback port, as tests.hostile.conftest.seed expects a server to be."""

    url: str
    admin_token: str


@pytest.fixture(scope="module")
def world(tmp_path_factory, wine_model_bytes: bytes) -> Iterator[World]:
    app = create_app(
        {"data_dir": tmp_path_factory.mktemp("checks-all") / "data", "long_poll_max": 1}
    )
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        token = app.extensions["tether"].new_admin_token
        yield seed(Served(f"http://127.0.0.1:{server.port}", token), wine_model_bytes)
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
        app.extensions["tether"].close()


@schemathesis.check
def positive_data_acceptance_but_stated_rules(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case
) -> bool | None:
    """Run positive_data_acceptance, passing a 422 that names only a rule the schema states.

    Or one that names only a form part holding a JSON document (`contentSchema`: the upload's
    metadata): schemathesis sends any string there, not a document of that schema.
    """
    if response.status_code == 422 and (
        _names_only_stated_rules(response) or _names_only_documents_in_parts(case, response)
    ):
        return None
    return positive_data_acceptance(ctx, response, case)


def _names_only_stated_rules(response: schemathesis.Response) -> bool:
    error = response.json()["error"]
    if error["message"] in STATED_RULES:
        return True
    details = error["details"] if isinstance(error["details"], list) else []
    # A model's own validator (a report's) is named by pydantic with this prefix.
    said = {item["message"].removeprefix("Value error, ") for item in details}
    return bool(said) and said <= STATED_RULES


def _names_only_documents_in_parts(
    case: schemathesis.Case, response: schemathesis.Response
) -> bool:
    declared = case.operation.schema.raw_schema["paths"][case.operation.path][case.method.lower()]
    form = declared.get("requestBody", {}).get("content", {}).get("multipart/form-data", {})
    parts = form.get("schema", {}).get("properties", {})
    documents = {name for name, part in parts.items() if "contentSchema" in part}
    details = response.json()["error"]["details"] or []
    named = {item["field"].partition(".")[0] for item in details}
    return bool(named) and named <= documents


def test_every_rule_across_fields_is_stated_in_the_schema(world: World):
    with world.http() as http:
        document = json.dumps(http.get("/openapi.json").json())
    assert [rule for rule in sorted(STATED_RULES) if json.dumps(rule)[1:-1] not in document] == []


def test_checks_all_find_no_missing_body_coercion_or_pattern_failure(world: World):
    config = schemathesis.Config.from_dict(
        {
            "headers": {"Authorization": f"Bearer {world.admin}"},
            # Every check (`--checks all`), with positive_data_acceptance as above.
            "checks": {
                "enabled": True,
                "positive_data_acceptance": {"enabled": False},
                "negative_data_rejection": {"expected-statuses": REFUSALS},
            },
            "phases": {
                "examples": {"enabled": True},
                "coverage": {"enabled": True},
                "fuzzing": {"enabled": True},
                "stateful": {"enabled": False},
            },
            # The token is the test's, not a parameter to vary (see test_fuzz_api.py).
            "generation": {
                "max-examples": EXAMPLES,
                "database": "none",
                "with-security-parameters": False,
            },
            "seed": SEED,
            "continue-on-failure": True,
            "workers": 1,
            "request-timeout": 30,
        }
    )
    schema = schemathesis.openapi.from_url(f"{world.url}/openapi.json", config=config)
    found: list[str] = []
    for event in schemathesis.engine.from_schema(schema).execute():
        if isinstance(event, events.FatalError):
            raise event.exception
        if isinstance(event, events.NonFatalError):
            found.append(f"{event.label}: error: {event.info.message}")
        if isinstance(event, events.ScenarioFinished):
            found += _failures(event.recorder)
    assert not found, "\n\n".join(sorted(set(found)))


def _failures(recorder: Any) -> list[str]:
    """Describe each failed check of a scenario: what was sent, what came back, what is wrong."""
    described = []
    for case_id, nodes in recorder.checks.items():
        interaction = recorder.interactions.get(case_id)
        answer = interaction.response if interaction is not None else None
        got = f"{answer.status_code} {answer.content[:300]!r}" if answer is not None else "-"
        for node in nodes:
            if node.status is Status.FAILURE and node.failure_info is not None:
                failure = node.failure_info.failure
                described.append(
                    f"{recorder.label}: {node.name}: {failure.title}: {failure.message}\n"
                    f"  answered {got}\n  {node.failure_info.code_sample}"
                )
    return described
