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

from typing import Any

from flask import Flask, Response, jsonify
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from common.names import InvalidName
from control_plane.store.errors import RecordMissing, RevisionMismatch, StateConflict


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

    @app.errorhandler(ApiError)
    def handle_api_error(error: ApiError) -> Response:
        return error_body(error.status, error.code, error.message, error.details)

    @app.errorhandler(InvalidName)
    def handle_invalid_name(error: InvalidName) -> Response:
        return error_body(422, "invalid_name", str(error))

    @app.errorhandler(RecordMissing)
    def handle_missing(error: RecordMissing) -> Response:
        return error_body(404, "not_found", str(error))

    @app.errorhandler(RevisionMismatch)
    def handle_stale(error: RevisionMismatch) -> Response:
        return error_body(412, "stale_revision", str(error), {"current_revision": error.current})

    @app.errorhandler(StateConflict)
    def handle_conflict(error: StateConflict) -> Response:
        return error_body(409, "conflict", str(error))

    @app.errorhandler(HTTPException)
    def handle_http_exception(error: HTTPException) -> Response:
        status = error.code or 500
        response = error_body(
            status, _HTTP_CODES.get(status, "http_error"), error.description or error.name
        )
        if status == 405 and error.get_response().headers.get("Allow"):
            response.headers["Allow"] = error.get_response().headers["Allow"]
        return response

    @app.errorhandler(Exception)
    def handle_unexpected(error: Exception) -> Response:
        app.logger.exception("unhandled error")
        return error_body(500, "internal_error", "internal server error")
