"""Serve the loaded models over local HTTP: Open Inference Protocol v2 plus a plain JSON API.

Every route is listed in `create_inference_app`. Bad requests are refused before they reach a
model, with the protocol's error shape `{"error": "message"}`:

    400  malformed JSON (or nested deeper than json_body.MAX_DEPTH), wrong shape,
         missing/unknown features, wrong types or values out of range, empty batch
    404  unknown model, version or route
    413  batch over the row limit, or body over the byte limit
    500  the model raised on valid input
    503  not ready, or the feedback hook failed

`agent.serving.server.InferenceServer` runs the app (re-exported here for callers).
"""

from __future__ import annotations

import json
import logging
import math
import time
import uuid
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from agent.errors import AgentError
from agent.serving import json_body
from agent.serving.events import Feedback, PredictionEvent
from agent.serving.runtime import (
    DEFAULT_MAX_ROWS,
    BatchTooLarge,
    InvalidInput,
    PredictFailed,
    Prediction,
)
from agent.serving.runtime.oip import (
    model_metadata,
    output_tensors,
    requested_outputs,
    rows_from_inputs,
)
from agent.serving.runtime.validation import number_problem
from agent.serving.server import InferenceServer, error_body
from agent.serving.slots import Deployed, ModelSlots
from common.version import package_version

__all__ = ["InferenceServer", "create_inference_app"]

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
_REQUEST_ID_MAX = 128


class HttpError(AgentError):
    """A request the server refuses, with its status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def create_inference_app(
    slots: ModelSlots,
    *,
    is_ready: Callable[[], bool],
    on_prediction: Callable[[PredictionEvent], None] | None = None,
    max_batch_rows: int = DEFAULT_MAX_ROWS,
    on_feedback: Callable[[list[Feedback]], None] | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    metrics: Callable[[str], tuple[bytes, str]] | None = None,
) -> Flask:
    """Build the local inference app over `slots`.

    `on_prediction` runs after each successful prediction and `on_feedback` on each accepted
    feedback batch; exceptions from `on_prediction` are logged, never raised into the request.
    `metrics`, given the request's Accept header, returns the body and content type of
    `GET /metrics` (agent.metrics.AgentMetrics.scrape); without it there is no such route.
    """
    app = Flask("tether-agent")
    app.config["MAX_CONTENT_LENGTH"] = max_body_bytes
    service = _Service(slots, is_ready, on_prediction, on_feedback, max_batch_rows, metrics)
    app.extensions["tether_inference"] = service
    routes: list[tuple[str, str, Callable[..., Response]]] = [
        ("GET", "/v2", service.server_metadata),
        ("GET", "/v2/health/live", service.live),
        ("GET", "/v2/health/ready", service.ready),
        ("GET", "/v2/models/<model>", service.model_metadata),
        ("GET", "/v2/models/<model>/ready", service.model_ready),
        ("POST", "/v2/models/<model>/infer", service.infer),
        ("GET", "/v2/models/<model>/versions/<version>", service.model_metadata),
        ("GET", "/v2/models/<model>/versions/<version>/ready", service.model_ready),
        ("POST", "/v2/models/<model>/versions/<version>/infer", service.infer),
        ("POST", "/predict/<model>", service.predict),
        ("POST", "/feedback/<model>", service.feedback),
    ]
    if metrics is not None:
        routes.append(("GET", "/metrics", service.metrics))
    for method, rule, view in routes:
        app.add_url_rule(rule, endpoint=f"{method} {rule}", view_func=view, methods=[method])
    app.register_error_handler(HttpError, lambda e: _error(e.status, e.message))
    app.register_error_handler(HTTPException, _http_exception)
    app.register_error_handler(Exception, _unexpected)
    return app


class _Service:
    """The views, sharing the slots and hooks of one app."""

    def __init__(
        self,
        slots: ModelSlots,
        is_ready: Callable[[], bool],
        on_prediction: Callable[[PredictionEvent], None] | None,
        on_feedback: Callable[[list[Feedback]], None] | None,
        max_batch_rows: int,
        scrape: Callable[[str], tuple[bytes, str]] | None = None,
    ) -> None:
        self.slots = slots
        self.scrape = scrape
        self.is_ready = is_ready
        self.on_prediction = on_prediction
        self.on_feedback = on_feedback
        self.max_batch_rows = max_batch_rows

    # --- health and metadata ------------------------------------------------------------------

    def server_metadata(self) -> Response:
        return _json({"name": "tether-agent", "version": package_version(), "extensions": []})

    def live(self) -> Response:
        return _json({"live": True})

    def ready(self) -> Response:
        try:
            ready = bool(self.is_ready())
        except Exception:
            log.exception("is_ready() raised; reporting not ready")
            ready = False
        return _json({"ready": ready}, 200 if ready else 503)

    def model_metadata(self, model: str, version: str | None = None) -> Response:
        loaded = self._deployed(model, version).primary
        return _json(model_metadata(loaded))

    def model_ready(self, model: str, version: str | None = None) -> Response:
        loaded = self._deployed(model, version).primary
        return _json({"name": model, "version": str(loaded.version), "ready": True})

    def metrics(self) -> Response:
        # Like the health routes, no auth: it holds counts, never inputs, outputs or secrets.
        assert self.scrape is not None  # the route exists only with a scrape function
        body, content_type = self.scrape(request.headers.get("Accept", ""))
        return Response(body, content_type=content_type)

    # --- predictions --------------------------------------------------------------------------

    def infer(self, model: str, version: str | None = None) -> Response:
        deployed = self._deployed(model, version)
        loaded = deployed.primary
        body = _json_body()
        request_id = body.get("id")
        if request_id is not None and (not isinstance(request_id, str) or not request_id):
            raise HttpError(400, "'id' must be a non-empty string")
        request_id = request_id or _request_id()
        try:
            rows = rows_from_inputs(loaded, body.get("inputs"), max_rows=self.max_batch_rows)
            rows = loaded.validate(rows, max_rows=self.max_batch_rows)
            wanted = requested_outputs(loaded, body.get("outputs"))
        except InvalidInput as exc:
            raise _refusal(exc) from exc
        with_probabilities = wanted is None or "predict_proba" in wanted
        prediction = self._run(deployed, rows, request_id, with_probabilities)
        outputs = output_tensors(loaded, prediction, wanted)
        return _json(
            {
                "model_name": model,
                "model_version": str(loaded.version),
                "id": request_id,
                "outputs": outputs,
            },
            headers={"X-Request-Id": request_id},
        )

    def predict(self, model: str) -> Response:
        deployed = self._deployed(model)
        loaded = deployed.primary
        body = _json_body()
        unknown = sorted(set(body) - {"instances"})
        if unknown:
            raise HttpError(400, f"unknown field{'s' if len(unknown) > 1 else ''} {unknown}")
        if "instances" not in body:
            raise HttpError(400, "missing 'instances': send {\"instances\": [{feature: value}]}")
        try:
            rows = loaded.validate(body["instances"], max_rows=self.max_batch_rows)
        except InvalidInput as exc:
            raise _refusal(exc, "instances") from exc
        request_id = _request_id()
        prediction = self._run(deployed, rows, request_id, True)
        answer: dict[str, Any] = {"predictions": prediction.predictions}
        if prediction.probabilities is not None:
            answer["probabilities"] = prediction.probabilities
            answer["classes"] = prediction.classes
        answer.update(model=model, version=loaded.version, request_id=request_id)
        return _json(answer, headers={"X-Request-Id": request_id})

    def feedback(self, model: str) -> Response:
        self._deployed(model)
        body = _json_body()
        if "feedback" in body:
            if set(body) != {"feedback"}:
                raise HttpError(400, 'send either {"feedback": [...]} or one item, not both')
            items = body["feedback"]
            if not isinstance(items, list) or not items:
                raise HttpError(400, "'feedback' must be a non-empty array of items")
            if len(items) > self.max_batch_rows:
                raise HttpError(
                    413, f"{len(items)} feedback items is over the limit of {self.max_batch_rows}"
                )
        else:
            items = [body]
        received = [_feedback_item(model, item, i, len(items) > 1) for i, item in enumerate(items)]
        if self.on_feedback is not None:
            try:
                self.on_feedback(received)
            except Exception as exc:
                log.exception("on_feedback hook failed for model %s", model)
                raise HttpError(503, f"feedback could not be recorded: {exc}") from exc
        return _json({"accepted": len(received)}, 202)

    # --- helpers ------------------------------------------------------------------------------

    def _deployed(self, model: str, version: str | None = None) -> Deployed:
        deployed = self.slots.get(model)
        if deployed is None:
            served = ", ".join(self.slots.names()) or "none"
            raise HttpError(404, f"unknown model {model!r} (serving: {served})")
        if version is not None and version != str(deployed.primary.version):
            raise HttpError(
                404,
                f"model {model!r} version {version} is not served "
                f"(serving version {deployed.primary.version})",
            )
        return deployed

    def _run(
        self, deployed: Deployed, rows: list[dict[str, Any]], request_id: str, probabilities: bool
    ) -> Prediction:
        loaded = deployed.primary
        started = time.perf_counter()
        try:
            prediction = loaded.predict(rows, probabilities=probabilities)
        except PredictFailed as exc:
            log.error("request %s: %s", request_id, exc)
            raise HttpError(500, str(exc)) from exc
        latency = time.perf_counter() - started
        if self.on_prediction is not None:
            event = PredictionEvent(
                loaded.name, loaded.version, request_id, rows, prediction, latency, deployed
            )
            try:
                self.on_prediction(event)
            except Exception:  # the hook serves monitoring, never the caller
                log.exception("on_prediction hook failed for model %s", loaded.name)
        return prediction


def _json_body() -> dict[str, Any]:
    """Return the request's JSON object, whatever Content-Type the client sent."""
    raw = request.get_data(cache=False)
    if not raw.strip():
        raise HttpError(400, "request body is empty: send a JSON object")
    try:
        body = json_body.loads(raw)
    except json_body.MalformedJson as exc:
        raise HttpError(400, str(exc)) from exc
    if not isinstance(body, dict):
        raise HttpError(400, f"request body must be a JSON object, got {type(body).__name__}")
    return body


def _feedback_item(model: str, item: Any, index: int, many: bool) -> Feedback:
    where = f"feedback[{index}]: " if many else ""
    if not isinstance(item, dict):
        raise HttpError(400, f"{where}each feedback item must be an object")
    unknown = sorted(set(item) - {"request_id", "label", "index"})
    if unknown:
        raise HttpError(400, f"{where}unknown field{'s' if len(unknown) > 1 else ''} {unknown}")
    request_id = item.get("request_id")
    if not isinstance(request_id, str) or not 0 < len(request_id) <= _REQUEST_ID_MAX:
        raise HttpError(400, f"{where}'request_id' must be a string of 1-{_REQUEST_ID_MAX} chars")
    if "label" not in item:
        raise HttpError(400, f"{where}missing 'label'")
    label = item["label"]
    if not _is_scalar(label):
        raise HttpError(400, f"{where}'label' must be a number, string or boolean")
    if type(label) is int and (problem := number_problem(label)):
        # A label is scored against the predictions as a float64.
        raise HttpError(400, f"{where}'label' {problem}")
    row = item.get("index")
    if row is not None and (type(row) is not int or row < 0):
        raise HttpError(400, f"{where}'index' must be a non-negative integer (a row of the batch)")
    return Feedback(model=model, request_id=request_id, label=label, index=row)


def _is_scalar(value: Any) -> bool:
    if isinstance(value, bool | str | int):
        return True
    return isinstance(value, float) and math.isfinite(value)


def _refusal(exc: InvalidInput, what: str = "") -> HttpError:
    prefix = f"{what}: " if what else ""
    return HttpError(413 if isinstance(exc, BatchTooLarge) else 400, f"{prefix}{exc}")


def _request_id() -> str:
    given = request.headers.get("X-Request-Id", "")
    if 0 < len(given) <= _REQUEST_ID_MAX and given.isprintable():
        return given
    return uuid.uuid4().hex


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    try:
        text = json.dumps(body, separators=(",", ":"), allow_nan=False)
    except ValueError:  # a model returned NaN or infinity: JSON has no such numbers
        text = json.dumps(_finite(body), separators=(",", ":"))
    return Response(text, status, headers=headers, mimetype="application/json")


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


def _error(status: int, message: str) -> Response:
    return Response(error_body(message), status, mimetype="application/json")


def _http_exception(exc: HTTPException) -> Response:
    status = exc.code or 500
    if status == 404:
        message = f"not found: {request.path}"
    elif status == 405:
        allowed = ", ".join(sorted(set(exc.valid_methods or []) - {"HEAD", "OPTIONS"}))  # type: ignore[attr-defined]
        message = f"method {request.method} not allowed on {request.path} (allowed: {allowed})"
    elif status == 413:
        limit = request.max_content_length
        message = f"request body is over the limit of {limit} bytes"
    else:
        message = exc.description or exc.name
    return _error(status, message)


def _unexpected(exc: Exception) -> Response:
    log.exception("unexpected error serving %s %s", request.method, request.path)
    return _error(500, f"internal error: {type(exc).__name__}")
