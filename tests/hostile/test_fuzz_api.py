"""Schemathesis against /openapi.json of a real server, with an admin token.

Every documented operation gets generated requests, valid by its schema and not, aimed both at
made-up names and at the ones that exist. The promise: no 5xx, every answer is documented
(status, content type, body schema, headers), and the store is whole afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from control_plane.api.routing import OPERATIONS
from tests.hostile.conftest import World, seed
from tests.support.processes import ServerProcess
from tests.support.store import integrity

pytestmark = pytest.mark.e2e

EXAMPLES = 12  # per operation: ~40 operations x 12 requests stays well under a minute
GUNICORN_REQUEST_LINE = 4094  # gunicorn's limit_request_line default
DOCUMENTED = [
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
]


@dataclass(frozen=True)
class Fuzz:
    server: ServerProcess
    world: World
    schema: schemathesis.BaseSchema


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory, wine_model_bytes: bytes) -> Iterator[Fuzz]:
    data_dir = tmp_path_factory.mktemp("fuzz") / "data"
    # Long-polls are held up to long_poll_max by design; keep them shorter than a request's
    # timeout here, so a generated `?wait=` is answered, not timed out.
    with ServerProcess(data_dir, env={"TETHER_LONG_POLL_MAX": "2"}) as server:
        world = seed(server, wine_model_bytes)
        # The admin token goes with every request, so a generated Authorization header would
        # be replaced anyway; left in a negative case, it would count as a second invalid
        # part and hide that the first became valid once sent (a number as a name: "1.5e-3").
        config = schemathesis.Config.from_dict({"generation": {"with-security-parameters": False}})
        schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json", config=config)
        yield Fuzz(server, world, schema)


BY_KEY = {f"{op.method.upper()} {op.path}": op for op in OPERATIONS}


@pytest.mark.parametrize("operation", sorted(BY_KEY))
def test_generated_requests_get_documented_answers_and_no_5xx(fuzz: Fuzz, operation: str):
    method, path = operation.split(" ", 1)
    api_operation = fuzz.schema[path][method]
    world = fuzz.world
    real = {
        "env": world.env_a,
        "model": world.model,
        "version": 1,
        "agent_id": world.agent_a_id,
    }
    names = {p.name for p in api_operation.path_parameters}
    strategy = st.one_of(
        api_operation.as_strategy(GenerationMode.POSITIVE),
        api_operation.as_strategy(
            GenerationMode.POSITIVE,
            path_parameters={k: v for k, v in real.items() if k in names},
        ),
    )
    negative = api_operation.as_strategy(GenerationMode.NEGATIVE)
    headers = {"Authorization": f"Bearer {world.admin}"}

    @given(case=strategy)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def positive(case: schemathesis.Case) -> None:
        check(case, [not_a_server_error, *DOCUMENTED])

    @given(case=negative)
    @settings(
        max_examples=EXAMPLES // 2,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def hostile(case: schemathesis.Case) -> None:
        check(case, [not_a_server_error, negative_data_rejection, *DOCUMENTED])

    def check(case: schemathesis.Case, checks: list) -> None:
        response = case.call(base_url=world.url, headers=headers, timeout=30)
        if response.status_code == 414:
            # gunicorn refuses a request line over its limit before the app sees it; only
            # a generated query string that long gets this answer.
            assert len(response.request.url or "") > GUNICORN_REQUEST_LINE, response.request.url
            return
        case.validate_response(response, checks=checks)

    positive()
    declared = BY_KEY[operation]
    if declared.path_params or declared.query or declared.body or declared.multipart:
        hostile()  # with nothing to get wrong, there is no invalid request to make


def test_the_store_is_whole_after_the_fuzzing(fuzz: Fuzz):
    assert integrity(Path(fuzz.server.data_dir)) == "ok"
    with fuzz.world.http() as http:
        for path in (
            "/api/v1/models",
            "/api/v1/environments",
            "/api/v1/agents",
            "/api/v1/reports",
            "/api/v1/events",
            "/api/v1/tokens",
            f"/api/v1/environments/{fuzz.world.env_a}/status",
            f"/api/v1/environments/{fuzz.world.env_a}/history",
        ):
            assert http.get(path).status_code == 200, path
        assert http.get("/readyz").status_code == 200
    assert "Traceback" not in fuzz.server.log()
