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


def test_path_and_query_names_carry_the_pattern_the_server_checks(client):
    from common.names import NAME_MAX_LENGTH, NAME_PATTERN

    name = {"type": "string", "pattern": NAME_PATTERN, "maxLength": NAME_MAX_LENGTH}
    document = client.get("/openapi.json").get_json()
    seen = set()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for param in operation["parameters"]:
                if param["name"] in ("env", "model") and param["in"] == "path":
                    assert param["schema"] == name, (method, path, param)
                    seen.add(param["name"])
                if param["name"] in ("environment", "model") and param["in"] == "query":
                    assert name in param["schema"]["anyOf"], (method, path, param)
                    seen.add(f"?{param['name']}")
    assert seen == {"env", "model", "?environment", "?model"}
    assert "422" in document["paths"]["/api/v1/environments/{env}"]["get"]["responses"]


def test_the_name_pattern_is_the_name_rule():
    from common.names import NAME_MAX_LENGTH, NAME_PATTERN, is_valid_name

    samples = ["a", "a.b", "a..b", "x.", ".x", "-x", "0" * 64, "0" * 65, "A", "a/b", "a b", "é"]
    by_pattern = [
        bool(re.fullmatch(NAME_PATTERN, s)) and len(s) <= NAME_MAX_LENGTH for s in samples
    ]
    assert by_pattern == [is_valid_name(s) for s in samples]
    assert by_pattern == [True, True, False, True, False, False, True, False] + [False] * 4


def test_dicts_keyed_by_a_name_refuse_other_keys_in_the_schema(client):
    schemas = client.get("/openapi.json").get_json()["components"]["schemas"]
    models = schemas["Heartbeat"]["properties"]["models"]
    assert "patternProperties" not in models
    assert models["propertyNames"]["pattern"] == schemas["Report"]["properties"]["model"]["pattern"]
    assert models["additionalProperties"] == {"$ref": "#/components/schemas/ActualModel"}


def test_a_tagged_union_requires_its_tag(client):
    schemas = client.get("/openapi.json").get_json()["components"]["schemas"]
    assert "kind" in schemas["NumericCounts"]["required"]
    assert "kind" in schemas["CategoricalCounts"]["required"]


def test_rules_across_fields_are_stated_where_the_field_is(client):
    from common.schemas import ENROLLMENT_NEEDS_ENVIRONMENT, ENROLLMENT_ONLY, SHADOW_DIFFERS

    schemas = client.get("/openapi.json").get_json()["components"]["schemas"]
    token = schemas["TokenCreate"]["properties"]
    assert ENROLLMENT_ONLY.format(field="max_uses") in token["max_uses"]["description"]
    assert ENROLLMENT_ONLY.format(field="environment") in token["environment"]["description"]
    assert ENROLLMENT_NEEDS_ENVIRONMENT in token["environment"]["description"]
    shadow = schemas["DesiredModelUpdate"]["properties"]["shadow"]
    assert SHADOW_DIFFERS in shadow["description"]


def test_the_upload_documents_each_part_as_the_server_reads_it(client):
    document = client.get("/openapi.json").get_json()
    upload = document["paths"]["/api/v1/models/{model}/versions"]["post"]["requestBody"]
    form = upload["content"]["multipart/form-data"]["schema"]
    assert form["required"] == ["artifact", "metadata"]
    assert form["additionalProperties"] is False
    assert form["properties"]["metadata"]["contentSchema"] == {
        "$ref": "#/components/schemas/VersionMetadata"
    }
    assert form["properties"]["reference_profile"]["format"] == "binary"
