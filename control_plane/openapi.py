"""Generate the OpenAPI document from the declared operations and their pydantic models."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import (
    GenerateJsonSchema,
    JsonSchemaMode,
    JsonSchemaValue,
    models_json_schema,
)
from pydantic_core import core_schema

from common.schemas import ErrorBody
from control_plane.api.routing import OPERATIONS, Operation

REF = "#/components/schemas/{model}"
Refs = dict[tuple[Any, JsonSchemaMode], str]
_STATUS_TEXT = {
    200: "OK",
    201: "Created",
    204: "No content",
    206: "Partial content",
    304: "Not modified",
    307: "Fetch the bytes from `Location`: a short-lived presigned URL, to GET with no token",
    400: "Malformed request",
    401: "Missing or invalid token",
    403: "Token of the wrong scope",
    404: "Not found",
    409: "Conflict with the current state",
    412: "Stale revision (If-Match)",
    413: "Request too large",
    416: "Range not satisfiable",
    422: "Invalid field; `details` names each one",
}


class ApiJsonSchema(GenerateJsonSchema):
    """pydantic's JSON Schema, saying of dicts keyed by a pattern what the validator checks."""

    def dict_schema(self, schema: core_schema.DictSchema) -> JsonSchemaValue:
        # pydantic writes `dict[Name, X]` as patternProperties, which lets any other key through
        # with any value; the validator refuses such a key, so say that: every key matches.
        json_schema = super().dict_schema(schema)
        patterns = json_schema.pop("patternProperties", None)
        if patterns:
            ((pattern, values),) = patterns.items()
            json_schema["propertyNames"] = {
                "pattern": pattern,
                **json_schema.get("propertyNames", {}),
            }
            json_schema["additionalProperties"] = values
        return json_schema


def build_openapi(version: str) -> dict[str, Any]:
    """Return the OpenAPI 3.1 document for every registered operation."""
    wanted: set[tuple[type[BaseModel], JsonSchemaMode]] = {(ErrorBody, "serialization")}
    for op in OPERATIONS:
        if op.body is not None:
            wanted.add((op.body, "validation"))
        wanted |= {(part, "validation") for part in op.multipart_json.values()}
        if op.response is not None:
            wanted.add((op.response, "serialization"))
    keyed = sorted(wanted, key=lambda pair: (pair[0].__name__, pair[1]))
    refs, schemas = models_json_schema(keyed, ref_template=REF, schema_generator=ApiJsonSchema)
    ref = {key: value["$ref"] for key, value in refs.items()}
    _require_tags(schemas.get("$defs", {}))
    paths: dict[str, dict[str, Any]] = {}
    for op in sorted(OPERATIONS, key=lambda o: (o.path, o.method)):
        paths.setdefault(op.path, {})[op.method] = _operation(op, ref)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Tether control plane",
            "version": version,
            "description": "Pull-based delivery of ML models to fleets of serving hosts.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _require_tags(definitions: dict[str, Any]) -> None:
    """Make the tag of each tagged union required in its members, as the validator has it.

    pydantic documents a member's `kind: Literal["numeric"] = "numeric"` as optional, yet refuses
    a member without it: a request valid by the schema would be refused.
    """
    tags = [node["discriminator"] for node in _nodes(definitions) if "discriminator" in node]
    for tag in tags:  # collected first: the walk must not see the documents it changes
        for target in tag.get("mapping", {}).values():
            required = definitions[target.rsplit("/", 1)[1]].setdefault("required", [])
            if tag["propertyName"] not in required:
                required.append(tag["propertyName"])


def _nodes(value: Any) -> Iterator[dict[str, Any]]:
    """Yield every object in a JSON document, depth first."""
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from _nodes(item)
    elif isinstance(value, list):
        for item in value:
            yield from _nodes(item)


def _operation(op: Operation, ref: Refs) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "operationId": op.endpoint.replace(".", "_"),
        "summary": op.summary,
        "tags": [op.tag],
        "parameters": _parameters(op),
        "responses": _responses(op, ref),
    }
    if op.description:
        entry["description"] = op.description
    entry["security"] = [] if op.roles is None else [{"bearer": []}]
    if op.roles is not None:
        roles = ", ".join(sorted(role.value for role in op.roles))
        entry["description"] = (entry.get("description", "") + f"\n\nRoles: {roles}.").strip()
    if op.body is not None:
        entry["requestBody"] = {
            "required": op.body_required,
            "content": {"application/json": {"schema": {"$ref": ref[(op.body, "validation")]}}},
        }
    if op.multipart is not None:
        # As routing.check_form_parts reads them: JSON parts are form fields holding a document
        # (JSON Schema's own words for that: contentMediaType, contentSchema), the rest files.
        properties = {
            name: {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": {"$ref": ref[(op.multipart_json[name], "validation")]},
                "description": text,
            }
            if name in op.multipart_json
            else {"type": "string", "format": "binary", "description": text}
            for name, text in op.multipart.items()
        }
        entry["requestBody"] = {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": properties,
                        "required": ["artifact", *op.multipart_json],
                        "additionalProperties": False,
                    },
                }
            },
        }
    return entry


def _parameters(op: Operation) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": _schema_of(kind)}
        for name, kind in op.path_params.items()
    ]
    if op.query is not None:
        schema = op.query.model_json_schema(schema_generator=ApiJsonSchema)
        required = set(schema.get("required", []))
        for name, prop in schema.get("properties", {}).items():
            params.append(
                {"name": name, "in": "query", "required": name in required, "schema": prop}
            )
    for name, text in op.response_headers.items():
        if name.lower().startswith("if-"):
            params.append(
                {
                    "name": name,
                    "in": "header",
                    "required": False,
                    "description": text,
                    "schema": {"type": "string"},
                }
            )
    return params


def _schema_of(kind: Any) -> dict[str, Any]:
    """Return the JSON Schema of a type, as the server validates it."""
    return TypeAdapter(kind).json_schema(schema_generator=ApiJsonSchema)


def _responses(op: Operation, ref: Refs) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    ok: dict[str, Any] = {"description": _STATUS_TEXT.get(op.status, "OK")}
    if op.response is not None:
        ok["content"] = {
            "application/json": {"schema": {"$ref": ref[(op.response, "serialization")]}}
        }
    elif op.binary_response is not None:
        # A stored file served as it is: JSON (a reference profile) or opaque bytes.
        file_schema = (
            {"type": "object"}
            if op.binary_response == "application/json"
            else {"type": "string", "format": "binary"}
        )
        ok["content"] = {op.binary_response: {"schema": file_schema}}
    headers = {
        name: {"description": text, "schema": {"type": "string"}}
        for name, text in op.response_headers.items()
        if not name.lower().startswith("if-")
    }
    if headers:
        ok["headers"] = headers
    responses[str(op.status)] = ok
    if op.other_status is not None:
        responses[str(op.other_status)] = {**ok, "description": _STATUS_TEXT[op.other_status]}
    for status in op.errors:
        if status in (304, 206, 307):
            responses[str(status)] = {"description": _STATUS_TEXT[status]}
            continue
        responses[str(status)] = {
            "description": _STATUS_TEXT.get(status, "Error"),
            "content": {
                "application/json": {"schema": {"$ref": ref[(ErrorBody, "serialization")]}}
            },
        }
    return responses
