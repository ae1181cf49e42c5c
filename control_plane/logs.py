"""Log lines of the control plane: the shared format and redaction, also for gunicorn's logs.

The formatters and the redaction live in `common.logs`, shared with the agent; this module adds
what only the server needs: gunicorn's own loggers written the same way.
"""

from __future__ import annotations

from typing import Any

from gunicorn.glogging import Logger as GunicornLogger

from common.logs import (
    FORMATS,
    REDACTED,
    JsonFormatter,
    RedactingFilter,
    TextFormatter,
    configure_logging,
    formatter,
    redact,
)

__all__ = [
    "FORMATS",
    "REDACTED",
    "JsonFormatter",
    "RedactingFilter",
    "TextFormatter",
    "configure_logging",
    "formatter",
    "gunicorn_logger",
    "redact",
]


def gunicorn_logger(log_format: str) -> type[GunicornLogger]:
    """Return a gunicorn logger class whose lines share our format and redaction."""

    class TetherGunicornLogger(GunicornLogger):
        """Gunicorn's own logs (workers booting, errors), formatted like ours."""

        def setup(self, cfg: Any) -> None:
            super().setup(cfg)
            for log in (self.error_log, self.access_log):
                for handler in log.handlers:
                    handler.setFormatter(formatter(log_format))
                    handler.addFilter(RedactingFilter())

    return TetherGunicornLogger
