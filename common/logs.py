"""Log lines of both sides: one line per event, as text or JSON, with secrets redacted.

Every handler gets `RedactingFilter`, and both formatters redact their finished line as well, so
a secret reaches no log whether it came in a message, its arguments, an exception's text or an
`extra` field. Secrets are tokens, Authorization credentials and PEM private keys.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

REDACTED = "[REDACTED]"
# Tokens carry their role in a prefix (control_plane/store/tokens.py: new_secret).
TOKEN = re.compile(r"tether_[a-z]+_[A-Za-z0-9_-]{20,}")
# An Authorization header in any of the shapes it gets logged in: `Authorization: Bearer x`,
# `'Authorization': 'Bearer x'`, `HTTP_AUTHORIZATION=Basic x`, `authorization="x"`.
AUTHORIZATION = re.compile(
    r"""(?ix)
    (authorization['"]?\s*[:=]\s*['"]?)        # the name and its separator
    (?:(?:bearer|basic|token|digest)\s+)?      # an optional scheme
    [^\s'",;}]+                                # the credential
    """
)
# A whole PEM private key block, its line breaks real or escaped (as in a JSON line or a repr).
# An unterminated block (a truncated message) loses everything after its header.
PRIVATE_KEY = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)",
    re.DOTALL,
)
FORMATS = ("text", "json")

# Attributes every LogRecord has; anything else on a record came in through `extra=`.
_STANDARD = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


def redact(text: str) -> str:
    """Replace tokens, Authorization credentials and private keys in `text` with a marker."""
    # The substring checks keep the common line, which holds no secret, off the regexes.
    if "tether_" in text:
        text = TOKEN.sub(REDACTED, text)
    if "uthorization" in text or "UTHORIZATION" in text:
        text = AUTHORIZATION.sub(lambda match: match.group(1) + REDACTED, text)
    if "PRIVATE KEY-----" in text:
        text = PRIVATE_KEY.sub(REDACTED, text)
    return text


class RedactingFilter(logging.Filter):
    """Redact secrets from a record's message before any handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message or record.args:
            record.msg, record.args = clean, None
        return True


class TextFormatter(logging.Formatter):
    """Format `time level logger: message`, a traceback folded onto the same line."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _timestamp(record)

    def format(self, record: logging.LogRecord) -> str:
        # A line break would start what a collector reads as another event.
        return redact(super().format(record)).replace("\r", "\\r").replace("\n", "\\n")


class JsonFormatter(logging.Formatter):
    """Format one JSON object per line: time, level, logger, message, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return redact(json.dumps(entry, default=str, ensure_ascii=False))


def formatter(log_format: str) -> logging.Formatter:
    """Return the formatter of a `log_format` setting."""
    if log_format not in FORMATS:
        raise ValueError(f"log format must be one of {FORMATS}, got {log_format!r}")
    return JsonFormatter() if log_format == "json" else TextFormatter()


def configure_logging(level: str, log_format: str) -> None:
    """Send every logger's records to stderr, one redacted line per event."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(log_format))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # A line per scheduled run or outgoing request would drown the process's own events.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
