"""Errors a client of the REST API raises, built from the API's one JSON error shape."""

from __future__ import annotations

from typing import Any

import httpx


class TetherError(Exception):
    """Base of Tether's client-side errors."""


class ApiResponseError(TetherError):
    """The control plane answered with an error status."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details


def error_from_response(response: httpx.Response) -> ApiResponseError:
    """Read the API's error shape, falling back to the status line for anything else."""
    try:
        error = response.json()["error"]
        return ApiResponseError(
            response.status_code, error["code"], error["message"], error.get("details")
        )
    except (ValueError, KeyError, TypeError):
        text = response.text.strip()[:200] or response.reason_phrase
        return ApiResponseError(response.status_code, "http_error", text)


def raise_for_error(response: httpx.Response) -> httpx.Response:
    """Return the response if it succeeded (or is a 304), else raise ApiResponseError."""
    if response.is_success or response.status_code == 304:
        return response
    raise error_from_response(response)
