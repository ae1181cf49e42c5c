"""The OpenAPI document is generated, complete, and its docs page works offline."""

from __future__ import annotations

import re

from control_plane.api.routing import OPERATIONS

# The dashboard's HTML pages and Prometheus' text format are not part of the JSON API.
UNDOCUMENTED = {
    "/openapi.json",
    "/docs",
    "/docs/assets/<path:name>",
    "/static/<path:filename>",
    "/metrics",
}


def test_every_route_is_documented_with_its_errors(app, client):
    document = client.get("/openapi.json").get_json()
    assert document["openapi"].startswith("3.1")
    for rule in app.url_map.iter_rules():
        if rule.rule in UNDOCUMENTED or rule.endpoint.startswith("dashboard."):
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        assert path in document["paths"], path
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            operation = document["paths"][path][method.lower()]
            assert operation["summary"], (path, method)
            if operation["security"]:
                assert {"401", "403"} <= set(operation["responses"]), (path, method)


def test_schemas_come_from_the_pydantic_models(client):
    document = client.get("/openapi.json").get_json()
    schemas = document["components"]["schemas"]
    assert "ErrorBody" in schemas
    desired = document["paths"]["/api/v1/environments/{env}/desired/{model}"]["put"]
    body_ref = desired["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    body = schemas[body_ref.rsplit("/", 1)[1]]
    assert {"version", "shadow", "reason"} <= set(body["properties"])
    assert desired["responses"]["412"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "ErrorBody"
    )
    every_ref = re.findall(
        r'"\$ref": "#/components/schemas/([^"]+)"', str(document).replace("'", '"')
    )
    assert every_ref and all(name in schemas for name in every_ref)


def test_operation_ids_are_unique():
    ids = [op.endpoint for op in OPERATIONS]
    assert len(ids) == len(set(ids))


def test_docs_page_uses_only_local_assets(client):
    page = client.get("/docs").get_data(as_text=True)
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sources and all(source.startswith("/docs/assets/") for source in sources)
    for source in sources:
        response = client.get(source)
        assert response.status_code == 200, source
        assert len(response.get_data()) > 1000
        response.close()


def test_api_reference_in_docs_is_up_to_date():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).parents[2]
    result = subprocess.run(
        [sys.executable, "scripts/api_docs.py", "--check"], cwd=root, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
