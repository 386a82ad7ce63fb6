"""Identifiers: content-hash versions, execution ids, attempt ids."""

from __future__ import annotations

import os
import time
from typing import Any

import msgspec
import xxhash

from plait.core.values import as_ref, item_index

_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"
_encoder = msgspec.json.Encoder(order="deterministic")


def content_version(*parts: Any) -> str:
    """xxh3-128 of the canonical (key-sorted) JSON encoding of ``parts``, as 32 hex digits."""
    digest = xxhash.xxh3_128()
    for part in parts:
        digest.update(_encoder.encode(part))
        digest.update(b"\x00")
    return digest.hexdigest()


def new_execution_id() -> str:
    """A 26-character, time-ordered, random identifier (ULID layout, lower-case Crockford base32)."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        value, index = divmod(value, 32)
        chars.append(_CROCKFORD[index])
    return "".join(reversed(chars))


def attempt_id(execution_id: str, node: str, attempt: int) -> str:
    """Deterministic, so every replica and every replay names an attempt the same way."""
    return f"{execution_id}/{node}/{attempt}"


def canonical_encoding(value: Any) -> bytes:
    """The canonical (key-sorted) JSON encoding that ``value_hash`` hashes (of a value given inline)."""
    return _encoder.encode(value)


def encoding_hash(encoding: bytes) -> str:
    """``value_hash`` of the value whose ``canonical_encoding`` is ``encoding``, without decoding it."""
    digest = xxhash.xxh3_128(encoding)
    digest.update(b"\x00")
    return digest.hexdigest()


def value_hash(value: Any) -> str:
    """A value's content hash: xxh3-128 of its canonical encoding, the same in every execution, whether the value
    is given inline or by reference (then the reference's own hash). Lineage and caching hash every value with this
    one function (an artifact carries its value's hash; equal values share it). An item of a stored list counts by
    its list's hash and its index."""
    ref = as_ref(value)
    if ref is None:
        return content_version(value)
    return content_version("item", ref.hash, item_index(value)) if ref.kind == "item" else ref.hash


def cache_key(task_name: str, cache_version: str, interface: Any, inputs: dict[str, Any]) -> str:
    """What a cached task's result is memoized under: not its code version, so an edit with the same
    ``cache_version`` reuses earlier results (bump ``cache_version`` to invalidate them). Each input counts by its
    ``value_hash``, so a value stored by reference hits the entry its inline twin filled."""
    hashes = {name: value_hash(value) for name, value in inputs.items()}
    return content_version("cache", task_name, cache_version, interface, hashes)


def item_attempt_id(execution_id: str, node: str, index: int, attempt: int) -> str:
    return f"{execution_id}/{node}[{index}]/{attempt}"


def item_of_attempt(attempt_id: str) -> int:
    """The map item an attempt id names (see ``item_attempt_id``); -1 when it names none."""
    head = attempt_id.rsplit("/", 1)[0]
    if not head.endswith("]") or "[" not in head:
        return -1
    try:
        return int(head[head.rindex("[") + 1 : -1])
    except ValueError:
        return -1
