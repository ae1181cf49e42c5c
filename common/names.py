"""Validate the names of models and environments."""

from __future__ import annotations

import re

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
_NAME_RE = re.compile(NAME_PATTERN)


class InvalidName(ValueError):
    """A model or environment name breaks the name rule."""


def check_name(value: str, what: str = "name") -> str:
    """Return `value` if it is a valid name, else raise InvalidName naming the rule."""
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value) or ".." in value:
        raise InvalidName(
            f"invalid {what} {value!r}: use 1-64 characters of a-z, 0-9, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return value


def is_valid_name(value: str) -> bool:
    """Tell whether `value` follows the name rule."""
    try:
        check_name(value)
    except InvalidName:
        return False
    return True
