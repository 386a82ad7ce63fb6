"""Strings PostgreSQL cannot store, escaped on the way in and restored on the way out.

PostgreSQL refuses the NUL character (``\\u0000``) in ``text`` and in ``jsonb``, and a task's input, output or
error message may hold one. The catalog's connections escape every string they write: NUL becomes ``ESCAPE``
followed by ``0``, and ``ESCAPE`` itself (U+FFFF, a noncharacter that text should not hold) becomes ``ESCAPE``
``1``, so that the escape is undone exactly; every string they read is restored. Strings that hold neither
character, all but a few, pass through unchanged. Arrays of text (the keys that batches read by) are not
escaped: an id with a NUL is refused, and its message is quarantined.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

NUL = "\x00"
ESCAPE = "\uffff"
_ESCAPES = {NUL: f"{ESCAPE}0", ESCAPE: f"{ESCAPE}1"}
_RESTORES = {f"{ESCAPE}0": NUL, f"{ESCAPE}1": ESCAPE}
_TO_ESCAPE = re.compile(f"[{NUL}{ESCAPE}]")
_TO_RESTORE = re.compile(f"{ESCAPE}[01]")
_IN_JSON = (b"\\u0000", ESCAPE.encode())  # how msgspec writes them in JSON


def escape_text(text: str) -> str:
    if NUL not in text and ESCAPE not in text:
        return text
    return _TO_ESCAPE.sub(lambda match: _ESCAPES[match.group()], text)


def restore_text(text: str) -> str:
    if ESCAPE not in text:
        return text
    return _TO_RESTORE.sub(lambda match: _RESTORES[match.group()], text)


def encode_json(value: Any) -> str:
    """``value`` as JSON text, every string in it (keys too) escaped."""
    data = msgspec.json.encode(value)
    if any(found in data for found in _IN_JSON):
        data = msgspec.json.encode(_each_string(msgspec.json.decode(data), escape_text))
    return data.decode()


def decode_json(text: str) -> Any:
    """JSON text read from PostgreSQL, every string in it restored."""
    value = msgspec.json.decode(text)
    return _each_string(value, restore_text) if ESCAPE in text else value


def _each_string(value: Any, change: Any) -> Any:
    if isinstance(value, str):
        return change(value)
    if isinstance(value, list):
        return [_each_string(item, change) for item in value]
    if isinstance(value, dict):
        return {change(key): _each_string(item, change) for key, item in value.items()}
    return value
