"""Find the control plane's URL, token and TLS files: flags, `TETHER_*` variables, cli.toml.

Each value is resolved on its own, so a token from the environment and a URL from the config
file combine as a user would expect. The TLS files (`ca_file`, `client_cert`, `client_key`)
come as flags or `TETHER_CA_FILE`, `TETHER_CLIENT_CERT`, `TETHER_CLIENT_KEY` (click reads
those), else from cli.toml, where a relative path is taken from cli.toml's directory.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from common.tls import TlsFiles

DEFAULT_URL = "http://127.0.0.1:8500"
URL_VARIABLE = "TETHER_URL"
TOKEN_VARIABLE = "TETHER_TOKEN"
TLS_KEYS = ("ca_file", "client_cert", "client_key")
KNOWN_KEYS = ("url", "token", *TLS_KEYS)


class CliConfigError(ValueError):
    """The CLI's config file is unreadable or holds a bad value."""


@dataclass(frozen=True)
class Target:
    """Where the CLI sends its requests, and with which token."""

    url: str
    token: str | None
    token_source: str  # for messages: "--token", "TETHER_TOKEN", a file path, or "nowhere"
    tls: TlsFiles = field(default_factory=TlsFiles)


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    """Return the path of cli.toml, honouring XDG_CONFIG_HOME."""
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "tether" / "cli.toml"


def resolve_target(
    url: str | None,
    token: str | None,
    environ: Mapping[str, str] | None = None,
    tls: TlsFiles | None = None,
) -> Target:
    """Pick the URL, token and TLS files from flags, environment, the config file, defaults."""
    environ = os.environ if environ is None else environ
    tls = tls or TlsFiles()
    path = config_path(environ)
    given = (url, token, tls.ca_file, tls.client_cert, tls.client_key)
    file_values = _read_config(path) if None in given else {}

    chosen_url = url or environ.get(URL_VARIABLE) or file_values.get("url") or DEFAULT_URL
    if token:
        chosen_token, source = token, "--token"
    elif environ.get(TOKEN_VARIABLE):
        chosen_token, source = environ[TOKEN_VARIABLE], TOKEN_VARIABLE
    elif file_values.get("token"):
        chosen_token, source = file_values["token"], str(path)
    else:
        chosen_token, source = None, "nowhere"
    from_file = {key: _file_path(path, file_values.get(key)) for key in TLS_KEYS}
    chosen_tls = TlsFiles(
        tls.ca_file or from_file["ca_file"],
        tls.client_cert or from_file["client_cert"],
        tls.client_key or from_file["client_key"],
    )
    return Target(
        url=chosen_url.rstrip("/"), token=chosen_token, token_source=source, tls=chosen_tls
    )


def _file_path(config: Path, value: str | None) -> Path | None:
    return None if not value else config.parent / Path(value).expanduser()


def _read_config(path: Path) -> dict[str, str]:
    try:
        with open(path, "rb") as handle:
            values = tomllib.load(handle)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise CliConfigError(f"cannot read {path}: {error}") from None
    unknown = sorted(set(values) - set(KNOWN_KEYS))
    if unknown:
        raise CliConfigError(
            f"{path}: unknown key(s) {', '.join(unknown)} (known: {', '.join(KNOWN_KEYS)})"
        )
    for key, value in values.items():
        if not isinstance(value, str):
            raise CliConfigError(f"{path}: {key} must be a string")
    return values
