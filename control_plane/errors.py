"""One error family for the API, and the one function that shapes every error body.

ApiError
 ├── BadRequest         400  malformed JSON or multipart
 ├── Unauthenticated    401  no token, or an unknown, expired or revoked one
 ├── Forbidden          403  a token of the wrong scope
 ├── NotFound           404
 ├── Conflict           409
 ├── PreconditionFailed 412  a stale If-Match revision
 ├── PayloadTooLarge    413
 └── Unprocessable      422  well-formed input with a bad field
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, jsonify
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from common.names import InvalidName
from control_plane.artifacts import ArtifactStoreError
from control_plane.store.errors import (
    InvalidChange,
    RecordMissing,
    RevisionMismatch,
    StateConflict,
)


class ApiError(Exception):
    """An error the API reports to its caller."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, details: Any = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        if code is not None:
            self.code = code


class BadRequest(ApiError):
    """The request could not be parsed."""

    status, code = 400, "bad_request"


class Unauthenticated(ApiError):
    """No valid token came with the request."""

    status, code = 401, "unauthenticated"


class Forbidden(ApiError):
    """The token is valid but may not do this."""

    status, code = 403, "forbidden"


class NotFound(ApiError):
    """The named resource does not exist."""

    status, code = 404, "not_found"


class Conflict(ApiError):
    """The request conflicts with the current state."""

    status, code = 409, "conflict"


class PreconditionFailed(ApiError):
    """An If-Match revision is stale."""

    status, code = 412, "stale_revision"


class PayloadTooLarge(ApiError):
    """The request body is over the limit."""

    status, code = 413, "too_large"


class Unprocessable(ApiError):
    """A field of the input is invalid."""

    status, code = 422, "invalid"


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    412: "stale_revision",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
}

# What the layers below HTTP refuse, and the status each refusal is answered with.
DOMAIN_ERRORS: dict[type[Exception], tuple[int, str]] = {
    InvalidName: (422, "invalid_name"),
    InvalidChange: (422, "invalid"),
    RecordMissing: (404, "not_found"),
    RevisionMismatch: (412, "stale_revision"),
    StateConflict: (409, "conflict"),
    ArtifactStoreError: (503, "artifact_store_unavailable"),
}


@dataclass(frozen=True)
class ErrorAnswer:
    """How an error is answered: the status, the error code, the message and its details."""

    status: int
    code: str
    message: str
    details: Any = None


def answer_for(error: Exception) -> ErrorAnswer:
    """Map any error to its answer, once for the JSON API and the dashboard's pages alike."""
    if isinstance(error, ApiError):
        return ErrorAnswer(error.status, error.code, error.message, error.details)
    for kind, (status, code) in DOMAIN_ERRORS.items():
        if isinstance(error, kind):
            return ErrorAnswer(status, code, str(error), getattr(error, "details", None))
    if isinstance(error, HTTPException):
        status = error.code or 500
        return ErrorAnswer(
            status, _HTTP_CODES.get(status, "http_error"), error.description or error.name
        )
    return ErrorAnswer(500, "internal_error", "internal server error")


def error_body(status: int, code: str, message: str, details: Any = None) -> Response:
    """Return the one JSON error response shape."""
    response = jsonify({"error": {"code": code, "message": message, "details": details}})
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="tether"'
    return response


def validation_details(error: ValidationError) -> list[dict[str, str]]:
    """Turn pydantic errors into `[{field, message}]`, naming each field by its path."""
    return [
        {
            "field": ".".join(str(part) for part in item["loc"]) or "(body)",
            "message": item["msg"],
        }
        for item in error.errors(include_url=False, include_input=False)
    ]


def invalid_input(error: ValidationError, prefix: str = "") -> Unprocessable:
    """Build the 422 for a pydantic ValidationError, its message naming the fields."""
    details = validation_details(error)
    if prefix:
        for item in details:
            item["field"] = f"{prefix}.{item['field']}" if item["field"] != "(body)" else prefix
    fields = ", ".join(sorted({item["field"] for item in details}))
    return Unprocessable(f"invalid field(s): {fields}", details=details)


def register_error_handlers(app: Flask) -> None:
    """Make every error, Flask's own included, answer in the one JSON shape."""

    @app.errorhandler(Exception)
    def handle_error(error: Exception) -> Response:
        answer = answer_for(error)
        if answer.status >= 500 and not isinstance(error, HTTPException):
            app.logger.exception("unhandled error")
        response = error_body(answer.status, answer.code, answer.message, answer.details)
        if isinstance(error, HTTPException) and answer.status == 405:
            allow = error.get_response().headers.get("Allow")
            if allow:
                response.headers["Allow"] = allow
        return response
