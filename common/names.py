"""Validate the names of models and environments.

The rule is stated once, here, as a pattern and a length: pydantic checks request fields with
them, `check_name` checks the rest, and the OpenAPI document carries both.
"""

from __future__ import annotations

import re

# 1-64 of a-z, 0-9, '.', '_', '-', starting with a letter or digit, never two dots in a row.
# Written without look-around, so that pydantic's Rust regex engine, Python's `re` and an OpenAPI
# (ECMA 262) client all read it alike; the length is NAME_MAX_LENGTH, beside it.
NAME_PATTERN = r"^[a-z0-9](?:\.?[a-z0-9_-])*\.?$"
NAME_MAX_LENGTH = 64
_NAME_RE = re.compile(NAME_PATTERN)


class InvalidName(ValueError):
    """A model or environment name breaks the name rule."""


def check_name(value: str, what: str = "name") -> str:
    """Return `value` if it is a valid name, else raise InvalidName naming the rule."""
    if not isinstance(value, str) or len(value) > NAME_MAX_LENGTH or not _NAME_RE.fullmatch(value):
        raise InvalidName(
            f"invalid {what} {value!r}: use 1-64 characters of a-z, 0-9, '.', '_' or '-', "
            "starting with a letter or digit, with no '..'"
        )
    return value


def is_valid_name(value: str) -> bool:
    """Tell whether `value` follows the name rule."""
    try:
        check_name(value)
    except InvalidName:
        return False
    return True
