"""Find the control plane's URL and token: flags, then `TETHER_*` variables, then cli.toml.

Each of the two values is resolved on its own, so a token from the environment and a URL from
the config file combine as a user would expect.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_URL = "http://127.0.0.1:8500"
URL_VARIABLE = "TETHER_URL"
TOKEN_VARIABLE = "TETHER_TOKEN"


class CliConfigError(ValueError):
    """The CLI's config file is unreadable or holds a bad value."""


@dataclass(frozen=True)
class Target:
    """Where the CLI sends its requests, and with which token."""

    url: str
    token: str | None
    token_source: str  # for messages: "--token", "TETHER_TOKEN", a file path, or "nowhere"


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    """Return the path of cli.toml, honouring XDG_CONFIG_HOME."""
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "tether" / "cli.toml"


def resolve_target(
    url: str | None, token: str | None, environ: Mapping[str, str] | None = None
) -> Target:
    """Pick the URL and token from flags, environment, the config file, then the default."""
    environ = os.environ if environ is None else environ
    path = config_path(environ)
    file_values = _read_config(path) if url is None or token is None else {}

    chosen_url = url or environ.get(URL_VARIABLE) or file_values.get("url") or DEFAULT_URL
    if token:
        chosen_token, source = token, "--token"
    elif environ.get(TOKEN_VARIABLE):
        chosen_token, source = environ[TOKEN_VARIABLE], TOKEN_VARIABLE
    elif file_values.get("token"):
        chosen_token, source = file_values["token"], str(path)
    else:
        chosen_token, source = None, "nowhere"
    return Target(url=chosen_url.rstrip("/"), token=chosen_token, token_source=source)


def _read_config(path: Path) -> dict[str, str]:
    try:
        with open(path, "rb") as handle:
            values = tomllib.load(handle)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise CliConfigError(f"cannot read {path}: {error}") from None
    unknown = sorted(set(values) - {"url", "token"})
    if unknown:
        raise CliConfigError(f"{path}: unknown key(s) {', '.join(unknown)} (known: url, token)")
    for key, value in values.items():
        if not isinstance(value, str):
            raise CliConfigError(f"{path}: {key} must be a string")
    return values
