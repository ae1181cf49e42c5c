"""Declare API operations once: the Flask route, its access rule and its OpenAPI entry."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime
from functools import wraps
from typing import Annotated, Any, TypeVar

from flask import Blueprint, request
from pydantic import BaseModel, BeforeValidator, ValidationError

from common.schemas import MAX_INTEGER, Role
from control_plane.auth import authorize
from control_plane.errors import BadRequest, NotFound, Unprocessable, invalid_input

ModelT = TypeVar("ModelT", bound=BaseModel)
_NUMBER = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")


def _iso_only(value: Any) -> Any:
    # pydantic would read "1.5" as seconds since 1970; the documented form is ISO 8601.
    if isinstance(value, str) and _NUMBER.fullmatch(value):
        raise ValueError("use an ISO 8601 date-time, e.g. 2026-01-31T12:00:00Z")
    return value


QueryTime = Annotated[datetime, BeforeValidator(_iso_only)]


@dataclass(frozen=True)
class Operation:
    """One documented API operation."""

    method: str
    path: str  # OpenAPI form: /api/v1/models/{model}
    endpoint: str
    summary: str
    description: str
    tag: str
    roles: frozenset[Role] | None
    body: type[BaseModel] | None = None
    multipart: dict[str, str] | None = None
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    other_status: int | None = None  # a second success status with the same body
    errors: tuple[int, ...] = ()
    path_params: dict[str, str] = field(default_factory=dict)
    response_headers: dict[str, str] = field(default_factory=dict)
    binary_response: str | None = None  # the media type of a body that is a file


OPERATIONS: list[Operation] = []
_RULE_PARAM = re.compile(r"<(?:(\w+):)?(\w+)>")


def operation(
    bp: Blueprint,
    rule: str,
    method: str = "GET",
    *,
    roles: Collection[Role] | None,
    tag: str,
    body: type[BaseModel] | None = None,
    multipart: dict[str, str] | None = None,
    query: type[BaseModel] | None = None,
    response: type[BaseModel] | None = None,
    status: int = 200,
    other_status: int | None = None,
    errors: tuple[int, ...] = (),
    response_headers: dict[str, str] | None = None,
    binary_response: str | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a view as an API operation; `roles=None` makes it public."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        allowed = None if roles is None else frozenset(roles)

        @wraps(view)
        def guarded(**kwargs: Any) -> Any:
            if allowed is not None:
                authorize(allowed)
            # Flask's int converter takes any size; nothing stored is numbered past SQLite's.
            too_big = [k for k, v in kwargs.items() if isinstance(v, int) and v > MAX_INTEGER]
            if too_big:
                raise NotFound(f"no {too_big[0]} {kwargs[too_big[0]]}")
            return view(**kwargs)

        bp.add_url_rule(rule, endpoint=view.__name__, view_func=guarded, methods=[method])
        doc = (view.__doc__ or "").strip()
        summary, _, description = doc.partition("\n")
        prefix = bp.url_prefix or ""
        all_errors = set(errors) | ({401, 403} if allowed is not None else set())
        if body is not None or multipart is not None or query is not None:
            all_errors |= {400, 422}
        path_params = {name: converter for converter, name in _RULE_PARAM.findall(rule)}
        if {"model", "env"} & path_params.keys():
            all_errors.add(422)  # a name in the path that breaks the name rule
        OPERATIONS.append(
            Operation(
                method=method.lower(),
                path=prefix + _RULE_PARAM.sub(r"{\2}", rule),
                endpoint=f"{bp.name}.{view.__name__}",
                summary=summary.strip(),
                description=description.strip(),
                tag=tag,
                roles=allowed,
                body=body,
                multipart=multipart,
                query=query,
                response=response,
                status=status,
                other_status=other_status,
                errors=tuple(sorted(all_errors)),
                path_params={
                    name: "integer" if converter == "int" else "string"
                    for name, converter in path_params.items()
                },
                response_headers=response_headers or {},
                binary_response=binary_response,
            )
        )
        return guarded

    return decorate


def parse_body(model: type[ModelT]) -> ModelT:
    """Parse the JSON body into `model`; 400 for malformed JSON, 422 naming each bad field."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        raw = b"{}"
    try:
        return model.model_validate_json(raw)
    except ValidationError as error:
        if any(item["type"] == "json_invalid" for item in error.errors()):
            raise BadRequest("the request body is not valid JSON", code="malformed_json") from None
        raise invalid_input(error) from None


def parse_query(model: type[ModelT]) -> ModelT:
    """Parse the query string into `model`; 422 naming each bad or unknown parameter."""
    unknown = sorted(set(request.args) - set(model.model_fields))
    if unknown:  # a misspelt filter would otherwise be ignored, and match everything
        raise Unprocessable(
            f"unknown query parameter(s): {', '.join(repr(name) for name in unknown)}",
            details=[{"field": f"query.{name}", "message": "unknown"} for name in unknown],
        )
    try:
        return model.model_validate(request.args.to_dict())
    except ValidationError as error:
        raise invalid_input(error, prefix="query") from None
