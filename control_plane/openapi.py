"""Generate the OpenAPI document from the declared operations and their pydantic models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

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


def build_openapi(version: str) -> dict[str, Any]:
    """Return the OpenAPI 3.1 document for every registered operation."""
    wanted: set[tuple[type[BaseModel], JsonSchemaMode]] = {(ErrorBody, "serialization")}
    for op in OPERATIONS:
        if op.body is not None:
            wanted.add((op.body, "validation"))
        if op.response is not None:
            wanted.add((op.response, "serialization"))
    keyed = sorted(wanted, key=lambda pair: (pair[0].__name__, pair[1]))
    refs, schemas = models_json_schema(keyed, ref_template=REF)
    ref = {key: value["$ref"] for key, value in refs.items()}
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
            "required": True,
            "content": {"application/json": {"schema": {"$ref": ref[(op.body, "validation")]}}},
        }
    if op.multipart is not None:
        properties = {
            name: {"type": "string", "format": "binary", "description": text}
            if name == "artifact"
            else {"type": "string", "description": text}
            for name, text in op.multipart.items()
        }
        entry["requestBody"] = {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": properties,
                        "required": ["artifact"],
                    }
                }
            },
        }
    return entry


def _parameters(op: Operation) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": kind}}
        for name, kind in op.path_params.items()
    ]
    if op.query is not None:
        schema = op.query.model_json_schema()
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
        if status in (304, 206):
            responses[str(status)] = {"description": _STATUS_TEXT[status]}
            continue
        responses[str(status)] = {
            "description": _STATUS_TEXT.get(status, "Error"),
            "content": {
                "application/json": {"schema": {"$ref": ref[(ErrorBody, "serialization")]}}
            },
        }
    return responses
