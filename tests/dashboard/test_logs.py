"""Logs: one line per event, text or JSON, and never a token or an Authorization header."""

from __future__ import annotations

import io
import json
import logging

import pytest
from gunicorn.config import Config

from control_plane.logs import (
    REDACTED,
    JsonFormatter,
    RedactingFilter,
    TextFormatter,
    configure_logging,
    gunicorn_logger,
    redact,
)

TOKEN = "tether_admin_" + "Zx9-_q" * 7


@pytest.mark.parametrize(
    ("line", "kept"),
    [
        (f"polled with {TOKEN} ok", "polled with [REDACTED] ok"),
        ("Authorization: Bearer abc.def-123", "Authorization: [REDACTED]"),
        (
            "{'Authorization': 'Bearer xyz', 'Host': 'a'}",
            "{'Authorization': '[REDACTED]', 'Host': 'a'}",
        ),
        ('{"authorization": "tok123"}', '{"authorization": "[REDACTED]"}'),
        ("HTTP_AUTHORIZATION=Basic dXNlcjpwYXNz next", "HTTP_AUTHORIZATION=[REDACTED] next"),
        ("tether_viewer_short is not a token", "tether_viewer_short is not a token"),
    ],
)
def test_redact(line, kept):
    assert redact(line) == kept


def events(log_format: str, root: logging.Logger) -> list[str]:
    """Log a few events that carry secrets every way they can; return the lines written."""
    configure_logging("info", log_format)
    stream = io.StringIO()
    root.handlers[0].setStream(stream)  # type: ignore[attr-defined]
    log = logging.getLogger("tether.test")
    log.info("agent polled with %s", TOKEN)
    log.warning("request", extra={"headers": {"Authorization": f"Bearer {TOKEN}"}})
    try:
        raise ValueError(f"bad token {TOKEN}\nsecond line")
    except ValueError:
        log.exception("request failed")
    return stream.getvalue().splitlines()


def test_json_lines_carry_no_secret(root_logger):
    lines = events("json", root_logger)
    assert len(lines) == 3
    entries = [json.loads(line) for line in lines]
    assert all(TOKEN not in line and "Bearer " not in line for line in lines)
    assert entries[0]["message"] == f"agent polled with {REDACTED}"
    assert entries[0]["level"] == "info" and entries[0]["logger"] == "tether.test"
    assert entries[1]["headers"] == {"Authorization": REDACTED}
    assert "ValueError: bad token [REDACTED]" in entries[2]["exception"]


def test_text_lines_are_one_per_event_and_carry_no_secret(root_logger):
    lines = events("text", root_logger)
    assert len(lines) == 3
    assert all(TOKEN not in line for line in lines)
    assert " INFO tether.test: agent polled with [REDACTED]" in lines[0]
    assert "\\nsecond line" in lines[2]  # the traceback folded onto its event's line


def test_gunicorn_writes_through_the_same_format_and_filter():
    config = Config()
    config.set("errorlog", "-")
    logger = gunicorn_logger("json")(config)
    handlers = logger.error_log.handlers
    assert handlers and all(isinstance(h.formatter, JsonFormatter) for h in handlers)
    assert all(any(isinstance(f, RedactingFilter) for f in h.filters) for h in handlers)
    text = gunicorn_logger("text")(config)
    assert all(isinstance(h.formatter, TextFormatter) for h in text.error_log.handlers)
