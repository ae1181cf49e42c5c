"""The shared log format: private keys are redacted, and the agent chooses text or JSON."""

from __future__ import annotations

import base64
import io
import json
import logging

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.settings import load_agent_settings
from common.cli import cli
from common.config import ConfigError
from common.logs import REDACTED, configure_logging, redact
from common.signing import private_key_pem

KEY = Ed25519PrivateKey.generate()
PEM = private_key_pem(KEY).decode()
BODY = "".join(PEM.strip().splitlines()[1:-1])  # the base64 between the armour lines


def secrets_of_the_key() -> list[str]:
    raw = KEY.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return [BODY, base64.b64encode(raw).decode()]


@pytest.mark.parametrize(
    "text",
    [
        f"loaded {PEM} from disk",
        f"loaded {json.dumps(PEM)} from disk",  # line breaks escaped, as in a JSON line
        f"loaded {PEM!r} from disk",
    ],
)
def test_a_private_key_is_redacted_whole(text):
    clean = redact(text)
    assert clean.startswith("loaded ") and clean.endswith(" from disk")
    assert REDACTED in clean and "PRIVATE KEY" not in clean
    assert all(secret not in clean for secret in secrets_of_the_key())


def test_a_key_cut_off_before_its_end_loses_everything_after_its_header():
    assert redact(f"start {PEM[:60]}") == f"start {REDACTED}"


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_no_line_carries_a_private_key(root_logger, log_format):
    configure_logging("info", log_format)
    stream = io.StringIO()
    root_logger.handlers[0].setStream(stream)  # type: ignore[attr-defined]
    log = logging.getLogger("tether.agent.test")
    log.info("read key %s", PEM)
    log.warning("provision", extra={"file": {"private_key_pem": PEM}})
    try:
        raise ValueError(f"not an Ed25519 key:\n{PEM}")
    except ValueError:
        log.exception("enroll failed")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3  # one line per event, the traceback included
    # Text lines show no `extra` fields: the key is redacted where it would have shown.
    assert sum(REDACTED in line for line in lines) == (3 if log_format == "json" else 2)
    for line in lines:
        for secret in secrets_of_the_key():
            assert secret not in line
        if log_format == "json":
            assert json.loads(line)["logger"] == "tether.agent.test"


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, "text"),
        ({"TETHER_LOG_FORMAT": "json"}, "json"),
        ({"TETHER_LOG_FORMAT": "text"}, "text"),
    ],
)
def test_the_agent_log_format_comes_from_the_environment(environ, expected):
    assert load_agent_settings(environ=environ).log_format == expected


def test_an_unknown_log_format_is_refused():
    with pytest.raises(ConfigError, match="log_format"):
        load_agent_settings(environ={"TETHER_LOG_FORMAT": "xml"})
    result = CliRunner().invoke(cli, ["agent", "run", "--log-format", "xml"])
    assert result.exit_code == 2 and "'xml' is not one of 'text', 'json'" in result.output
