"""The installed package's version, for `--version`, health answers, metrics and user agents."""

from __future__ import annotations

from functools import cache
from importlib.metadata import PackageNotFoundError, version

SOURCE_VERSION = "0.0.0+source"


@cache
def package_version() -> str:
    """Return tether's installed version, or SOURCE_VERSION in a source tree not installed."""
    try:
        return version("tether")
    except PackageNotFoundError:
        return SOURCE_VERSION
