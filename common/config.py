"""Load settings from defaults, a TOML file, `TETHER_*` environment variables and overrides.

Both sides describe their settings as a pydantic model; this module fills one in. Later sources
win: model defaults < TOML file < environment < explicit overrides (command-line flags, tests).
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

ENV_PREFIX = "TETHER_"
SettingsT = TypeVar("SettingsT", bound=BaseModel)


class ConfigError(ValueError):
    """A settings file or variable is unreadable or holds a bad value."""


def load_settings(
    model: type[SettingsT],
    path: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> SettingsT:
    """Build `model` from a TOML file, `TETHER_<NAME>` variables and overrides, in that order."""
    values: dict[str, Any] = {}
    if path is not None:
        values.update(read_toml(path))
    values.update(_from_environment(model, os.environ if environ is None else environ))
    values.update({key: value for key, value in (overrides or {}).items() if value is not None})
    unknown = sorted(set(values) - set(model.model_fields))
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")
    try:
        return model.model_validate(values)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}"
            for item in error.errors()
        )
        raise ConfigError(f"bad setting: {problems}") from None


def read_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML settings file, naming the file in any error."""
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"settings file not found: {path}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: {error}") from None


def _from_environment(model: type[BaseModel], environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in model.model_fields:
        raw = environ.get(ENV_PREFIX + name.upper())
        if raw is None:
            continue
        # Lists and tables come as JSON; scalars as plain text that pydantic coerces.
        if raw[:1] in "[{":
            try:
                values[name] = json.loads(raw)
                continue
            except json.JSONDecodeError:
                pass
        values[name] = raw
    return values
