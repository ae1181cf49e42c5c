"""Options and helpers the `tether agent` commands share, as decorators (--json: common)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from common.cli_options import data_dir_option
from common.config import ConfigError

F = TypeVar("F", bound=Callable[..., Any])


def config_option(command: F) -> F:
    """Add --config: the agent.toml to read."""
    return click.option(
        "--config",
        "config_file",
        type=click.Path(dir_okay=False, path_type=Path),
        envvar="TETHER_AGENT_CONFIG",
        help="agent.toml to read [$TETHER_AGENT_CONFIG].",
    )(command)


agent_data_dir_option = data_dir_option(
    "Agent state and cache [/var/lib/tether as root, else ./tether-agent]."
)


def load_settings_or_exit(config_file: Path | None, **overrides: Any):  # type: ignore[no-untyped-def]
    """Return the agent's settings, or exit with the configuration problem."""
    from agent.settings import load_agent_settings

    try:
        return load_agent_settings(config_file, overrides=overrides)
    except ConfigError as error:
        raise click.ClickException(str(error)) from None


def parse_labels(labels: tuple[str, ...]) -> dict[str, str]:
    """Turn repeated KEY=VALUE options into a dict."""
    parsed = {}
    for label in labels:
        key, sep, value = label.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{label!r} is not KEY=VALUE", param_hint="--label")
        parsed[key.strip()] = value.strip()
    return parsed
