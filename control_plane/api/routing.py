"""Declare API operations once: the Flask route, its access rule and its OpenAPI entry.

Path parameters are typed by their name, once, in PATH_PARAMETERS: the route matches and checks
a parameter, and /openapi.json describes it, from the same entry.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime
from functools import wraps
from typing import Annotated, Any, TypeVar

from flask import Blueprint, request
from pydantic import BaseModel, BeforeValidator, StringConstraints, ValidationError
from werkzeug.routing import BaseConverter

from common.names import InvalidName, check_name
from common.schemas import MAX_INTEGER, Name, Role
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

# Ids as the store makes them: `agt_` or `tok_` and a random part. Matching only an agent id
# keeps `/agents/enroll` from also reading as the agent "enroll": that path routes POST alone.
AGENT_ID = r"agt_[^/]+"
AgentId = Annotated[str, StringConstraints(pattern=f"^{AGENT_ID}$")]
TokenId = Annotated[str, StringConstraints(pattern=r"^tok_[^/]+$")]


class AgentIdConverter(BaseConverter):
    """Match an agent id in a route."""

    regex = AGENT_ID


@dataclass(frozen=True)
class PathParameter:
    """How a path parameter of one name is matched, checked and documented."""

    type: Any  # its schema in /openapi.json
    converter: str | None = None  # the werkzeug converter its route matches it with
    name_of: str | None = None  # a model or environment name, checked by check_name: 422


# The converter names are registered on the app by control_plane.api.register_blueprints.
CONVERTERS = {"agent_id": AgentIdConverter}
PATH_PARAMETERS = {
    "env": PathParameter(Name, name_of="environment name"),
    "model": PathParameter(Name, name_of="model name"),
    "agent_id": PathParameter(AgentId, converter="agent_id"),
    "token_id": PathParameter(TokenId),  # any other is not found: 404
}
_ANY_STRING = PathParameter(str)


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
    body_required: bool = True
    multipart: dict[str, str] | None = None
    multipart_json: dict[str, type[BaseModel]] = field(default_factory=dict)
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    other_status: int | None = None  # a second success status with the same body
    errors: tuple[int, ...] = ()
    path_params: dict[str, Any] = field(default_factory=dict)  # name: type, as PathParameter
    response_headers: dict[str, str] = field(default_factory=dict)
    binary_response: str | None = None  # the media type of a body that is a file


OPERATIONS: list[Operation] = []
_BY_ENDPOINT: dict[str, Operation] = {}
_RULE_PARAM = re.compile(r"<(?:(\w+):)?(\w+)>")


def operation(
    bp: Blueprint,
    rule: str,
    method: str = "GET",
    *,
    roles: Collection[Role] | None,
    tag: str,
    body: type[BaseModel] | None = None,
    body_required: bool = True,
    multipart: dict[str, str] | None = None,
    multipart_json: dict[str, type[BaseModel]] | None = None,
    query: type[BaseModel] | None = None,
    response: type[BaseModel] | None = None,
    status: int = 200,
    other_status: int | None = None,
    errors: tuple[int, ...] = (),
    response_headers: dict[str, str] | None = None,
    binary_response: str | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a view as an API operation; `roles=None` makes it public.

    A JSON `body` is required unless `body_required=False`: then an empty one reads as `{}`.
    `multipart` describes each part of a form upload; `multipart_json` names the model of each
    part that is a JSON document (validated with validate_json).
    """

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        allowed = None if roles is None else frozenset(roles)
        typed_rule = _RULE_PARAM.sub(_with_converter, rule)
        path_params = {name: converter for converter, name in _RULE_PARAM.findall(typed_rule)}
        names = [
            (name, what)
            for name in path_params
            if (what := _path_parameter(name).name_of) is not None
        ]

        @wraps(view)
        def guarded(**kwargs: Any) -> Any:
            if allowed is not None:
                authorize(allowed)
            # Flask's int converter takes any size; nothing stored is numbered past SQLite's.
            too_big = [k for k, v in kwargs.items() if isinstance(v, int) and v > MAX_INTEGER]
            if too_big:
                raise NotFound(f"no {too_big[0]} {kwargs[too_big[0]]}")
            for name, what in names:
                _check_path_name(name, kwargs[name], what)
            return view(**kwargs)

        bp.add_url_rule(typed_rule, endpoint=view.__name__, view_func=guarded, methods=[method])
        doc = (view.__doc__ or "").strip()
        summary, _, description = doc.partition("\n")
        prefix = bp.url_prefix or ""
        all_errors = set(errors) | ({401, 403} if allowed is not None else set())
        if body is not None or multipart is not None or query is not None:
            all_errors |= {400, 422}
        if names:
            all_errors.add(422)  # a name in the path that breaks the name rule
        declared = Operation(
            method=method.lower(),
            path=prefix + _RULE_PARAM.sub(r"{\2}", rule),
            endpoint=f"{bp.name}.{view.__name__}",
            summary=summary.strip(),
            description=description.strip(),
            tag=tag,
            roles=allowed,
            body=body,
            body_required=body_required,
            multipart=multipart,
            multipart_json=multipart_json or {},
            query=query,
            response=response,
            status=status,
            other_status=other_status,
            errors=tuple(sorted(all_errors)),
            path_params={
                name: int if converter == "int" else _path_parameter(name).type
                for name, converter in path_params.items()
            },
            response_headers=response_headers or {},
            binary_response=binary_response,
        )
        OPERATIONS.append(declared)
        _BY_ENDPOINT[declared.endpoint] = declared
        return guarded

    return decorate


def _path_parameter(name: str) -> PathParameter:
    return PATH_PARAMETERS.get(name, _ANY_STRING)


def _with_converter(match: re.Match[str]) -> str:
    """Give a rule's `<name>` the converter PATH_PARAMETERS names for it, if any."""
    converter, name = match.groups()
    typed = _path_parameter(name).converter
    return f"<{typed}:{name}>" if converter is None and typed is not None else match.group(0)


def _check_path_name(param: str, value: str, what: str) -> None:
    try:
        check_name(value, what)
    except InvalidName as error:
        raise Unprocessable(
            str(error),
            code="invalid_name",
            details=[{"field": f"path.{param}", "message": "breaks the name rule"}],
        ) from None


def parse_body(model: type[ModelT]) -> ModelT:
    """Parse the JSON body into `model`; 400 for malformed JSON, 422 naming each bad field.

    A missing (empty) body is a 422 unless the operation declared it optional: a PUT with no
    body must not read as an empty document and replace what is stored with defaults.
    """
    raw = request.get_data(cache=True)
    if not raw.strip():
        declared = _BY_ENDPOINT.get(request.endpoint or "")
        if declared is None or declared.body_required:
            raise Unprocessable(
                f"the request body is required: send a JSON {model.__name__} object",
                details=[{"field": "(body)", "message": "missing"}],
            )
        raw = b"{}"
    try:
        return validate_json(model, raw)
    except ValidationError as error:
        if any(item["type"] == "json_invalid" for item in error.errors()):
            raise BadRequest("the request body is not valid JSON", code="malformed_json") from None
        raise invalid_input(error) from None


def check_form_parts() -> None:
    """Refuse a multipart part the operation does not declare, misplaced, or missing: 422.

    Its `multipart_json` parts are required form fields; every other part it declares is an
    optional file. A part the server would ignore is refused, as unknown JSON keys are.
    """
    declared = _BY_ENDPOINT[request.endpoint or ""]
    fields = set(declared.multipart_json)
    files = set(declared.multipart or {}) - fields
    problems = {name: "unknown part" for name in {*request.form, *request.files} - fields - files}
    problems |= {name: "send it as a file part" for name in request.form if name in files}
    problems |= {name: "send it as a form field" for name in request.files if name in fields}
    problems |= {name: "missing" for name in fields if name not in request.form}
    if problems:
        raise Unprocessable(
            f"invalid part(s): {', '.join(sorted(problems))}",
            details=[{"field": name, "message": text} for name, text in sorted(problems.items())],
        )


def validate_json(model: type[ModelT], raw: bytes | str) -> ModelT:
    """Validate a JSON document from a client into `model` in strict mode; raise ValidationError.

    Lax pydantic reads `true` as 1, `0` as false, `"3"` as 3 and `1700000000` as a date: a
    client that sent any of those may have meant something else, so each is refused. A whole
    number written with a fraction (`5.0`) is still the integer 5, as JSON Schema counts it.
    """
    try:
        return model.model_validate_json(raw, strict=True)
    except ValidationError as error:
        integral = _integral_numbers(raw) if any(map(_whole_float, error.errors())) else None
        if integral is None:
            raise
    # Rare (the project's own clients send 5 for 5), so only this path parses the body twice.
    return model.model_validate_json(integral, strict=True)


def _whole_float(item: Any) -> bool:
    value = item.get("input")
    return item["type"] == "int_type" and isinstance(value, float) and value.is_integer()


def _integral_numbers(raw: bytes | str) -> str | None:
    """Return the JSON document with each whole number spelt as an integer (None if unreadable)."""
    try:
        return json.dumps(json.loads(raw, parse_float=_number))
    except (ValueError, RecursionError):
        return None


def _number(text: str) -> float | int:
    value = float(text)
    return int(value) if value.is_integer() else value


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
