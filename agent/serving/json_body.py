"""Parse a request body as JSON, refusing nesting deeper than the inference server accepts.

`json.loads` recurses once per nested array or object, so a body of a thousand `[` raises
RecursionError: a 500 and a traceback for a few kilobytes. The depth is checked first, on the
bytes and without recursion: strings are cut out (their brackets are text), then the brackets
left are counted. Every request pays this, so it is built from whole-buffer operations (bytes'
count, translate and replace; numpy where a body needs more) rather than a loop over
characters: a body with fewer brackets than the bound, as a one-row request has, costs two
`count`s (under a microsecond), a 10,000-row batch a small fraction of its `json.loads`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from agent.errors import AgentError

__all__ = ["MAX_DEPTH", "MalformedJson", "TooDeep", "check_depth", "loads"]

# Arrays and objects inside each other. A /predict body is 3 deep and an OIP body with a nested
# 2-D tensor 5; a tensor nested along 60 dimensions still fits. Python's parser gives up at
# about 1000 (its recursion limit), so 64 also leaves it far from that.
MAX_DEPTH = 64

_SQUARE = bytes.maketrans(b"{}", b"[]")  # depth is all that matters: one kind of bracket
_BUT_BRACKETS_AND_QUOTES = bytes(sorted(set(range(256)) - set(b'[]{}"')))
_QUOTE, _OPEN = ord('"'), ord("[")
_UP, _DOWN = np.int32(1), np.int32(-1)
_CHUNK = 1 << 20  # bytes per numpy step: a 64 MiB body needs a few MiB of scratch, not 500


class MalformedJson(ValueError, AgentError):
    """A request body that is not JSON the server accepts."""


class TooDeep(MalformedJson):
    """A request body nests arrays and objects deeper than the bound."""


def loads(raw: bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """Return the JSON value in `raw` (as `json.loads` would), or raise MalformedJson."""
    try:
        check_depth(raw, max_depth)
        return json.loads(raw)
    except MalformedJson:
        raise
    except (ValueError, UnicodeError) as exc:  # JSONDecodeError is a ValueError
        raise MalformedJson(f"request body is not valid JSON: {exc}") from exc


def check_depth(raw: bytes, limit: int = MAX_DEPTH) -> None:
    """Raise TooDeep if `raw` opens more than `limit` arrays and objects inside each other.

    Exact for valid JSON. For invalid JSON it may overestimate, never underestimate, the depth
    `json.loads` would reach before it fails, so nothing it lets through can recurse deeper.
    """
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return  # nothing can nest deeper than the brackets it holds
    encoding = json.detect_encoding(raw)
    if encoding not in ("utf-8", "utf-8-sig"):  # json.loads reads UTF-16 and -32 too
        raw = raw.decode(encoding, "surrogatepass").encode("utf-8", "surrogatepass")
    if _deepest(_brackets(raw), limit) > limit:
        raise TooDeep(f"request body nests arrays and objects deeper than {limit} levels")


def _brackets(raw: bytes) -> bytes:
    """Return the brackets of `raw` outside its strings, `{}` written as `[]`."""
    if b"\\" in raw:
        # Escapes are what could hide a quote; `\\` first, so `\\"` still ends its string.
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    marks = raw.translate(_SQUARE, _BUT_BRACKETS_AND_QUOTES)
    quotes = marks.count(b'"')
    # Every quote in an adjacent pair means no string holds a bracket (the usual case): the
    # pairs, counted left to right, can then only be each string's own two quotes.
    if marks.count(b'""') * 2 == quotes:
        return marks.translate(None, b'"')
    # Some string holds brackets: keep what lies after an even number of quotes.
    kept, inside = [], False
    for chunk in _chunks(marks):
        quote = chunk == _QUOTE
        parity = np.bitwise_xor.accumulate(quote)  # True from an opening quote to its closing
        if inside:
            parity = ~parity
        kept.append(chunk[~(parity | quote)].tobytes())
        inside = bool(parity[-1])
    return b"".join(kept)


def _deepest(brackets: bytes, limit: int) -> int:
    """Return the depth of a bracket sequence, or any number past `limit` once it is seen."""
    # Each pass removes every innermost `[]`, one level of the nest: the brackets of most bodies
    # are gone in a few passes. Stop when a pass no longer halves them (a deep, thin nest).
    peeled = 0
    while brackets and peeled <= limit:
        shorter = brackets.replace(b"[]", b"")
        if len(shorter) == len(brackets):
            break  # no pair left: unbalanced, json.loads will say where
        peeled += 1
        thin = len(shorter) * 2 > len(brackets)
        brackets = shorter
        if thin:
            break
    depth = deepest = peeled
    for chunk in _chunks(brackets):
        levels = np.cumsum(np.where(chunk == _OPEN, _UP, _DOWN), dtype=np.int32)
        deepest = max(deepest, depth + int(levels.max()))
        if deepest > limit:
            return deepest
        depth += int(levels[-1])
    return deepest


def _chunks(data: bytes) -> Iterator[npt.NDArray[np.uint8]]:
    """Yield `data` as arrays of at most _CHUNK bytes, without copying it."""
    for start in range(0, len(data), _CHUNK):
        yield np.frombuffer(data, np.uint8, min(_CHUNK, len(data) - start), start)
