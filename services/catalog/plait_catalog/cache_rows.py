"""Cache entry rows from the cache log: a fill stores the key's row, a clear removes it. Pure, no I/O.

Reservations, releases and waiters only coordinate the nodes computing a key; they change no row.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from plait.core.cachelog import CacheCleared, CacheEntryRecord, CacheFilled

CacheKey = tuple[str, str, str]  # (project, domain, cache_key)


class CacheEntryRow(msgspec.Struct, kw_only=True):
    project: str
    domain: str
    cache_key: str
    task_name: str
    task_version: str
    outputs: dict[str, Any]
    execution_id: str
    node_id: str
    attempt_id: str
    created_at: datetime
    sequence: int  # stream sequence of the fill


class CacheEntries(msgspec.Struct):
    """A batch's last word on each key it saw: the row to store, or None to delete the key's row."""

    changed: dict[CacheKey, CacheEntryRow | None] = msgspec.field(default_factory=dict)


def apply_record(entries: CacheEntries, record: CacheEntryRecord, sequence: int) -> None:
    match record:
        case CacheFilled():
            entries.changed[record.project, record.domain, record.cache_key] = CacheEntryRow(
                project=record.project,
                domain=record.domain,
                cache_key=record.cache_key,
                task_name=record.task_name,
                task_version=record.task_version,
                outputs=record.outputs,
                execution_id=record.execution_id,
                node_id=record.node,
                attempt_id=record.attempt_id,
                created_at=record.at,
                sequence=sequence,
            )
        case CacheCleared():
            entries.changed[record.project, record.domain, record.cache_key] = None
