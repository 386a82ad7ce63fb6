"""The cache's own log: what happened to one cache key, in order, on the key's subjects of the event stream.

The last record on a key's entry subject is the key's state: free (none, released, cleared), reserved by
one node that is computing it, or filled with outputs. Reservations are taken with optimistic
concurrency on that subject, so one node at a time computes a key, and nodes that need it meanwhile
wait: each adds a ``CacheWaiter`` record on the key's waiter subject and is woken when the holder fills or
releases the key. The catalog projects filled and cleared entries into its cache table and answers
look-ups from it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec


class CacheReserved(msgspec.Struct, frozen=True, kw_only=True, tag="cache_reserved.v1"):
    """``execution_id``/``node`` computes the key; others wait until it fills or releases it, or ``until``."""

    execution_id: str
    node: str
    at: datetime
    until: datetime


class CacheFilled(msgspec.Struct, frozen=True, kw_only=True, tag="cache_filled.v1"):
    project: str
    domain: str
    cache_key: str
    task_name: str
    task_version: str
    outputs: dict[str, Any]
    execution_id: str
    node: str
    attempt_id: str
    at: datetime


class CacheReleased(msgspec.Struct, frozen=True, kw_only=True, tag="cache_released.v1"):
    """The holder ended without a result (its node failed, its execution ended): the key is free again."""

    execution_id: str
    node: str
    reason: str
    at: datetime


class CacheCleared(msgspec.Struct, frozen=True, kw_only=True, tag="cache_cleared.v1"):
    """A user removed the entry (``plait cache clear``): the next look-up computes the key again."""

    project: str
    domain: str
    cache_key: str
    cleared_by: str
    at: datetime


CacheEntryRecord = CacheReserved | CacheFilled | CacheReleased | CacheCleared


class CacheWaiter(msgspec.Struct, frozen=True, kw_only=True, tag="cache_waiter.v1"):
    """Look-up ``round`` of ``execution_id``/``node`` waits for the key's current holder."""

    execution_id: str
    node: str
    round: int
    at: datetime


def reserved_by(record: CacheEntryRecord | None, execution_id: str, node: str) -> bool:
    return isinstance(record, CacheReserved) and (record.execution_id, record.node) == (execution_id, node)
