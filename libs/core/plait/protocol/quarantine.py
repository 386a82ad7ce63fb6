"""The quarantine's records and ``plait.quarantine_replay.<reader>``, which asks a reader to take its entries again."""

from __future__ import annotations

from datetime import datetime

import msgspec

CATALOG_READER = "catalog"  # the catalog's projection
OUTBOX_READER = "outbox"  # the schedulers' dispatch outbox
READERS = (CATALOG_READER, OUTBOX_READER)


class QuarantineEntry(msgspec.Struct, frozen=True, kw_only=True):
    """``plait.quarantine.<reader>.<sequence>``: a stored message that ``reader`` could not take, and why."""

    reader: str
    stream: str
    sequence: int
    subject: str
    size: int
    reason: str
    quarantined_at: datetime
    resolved_at: datetime | None = None


class ReplayRequest(msgspec.Struct, frozen=True):
    """Which entries of a reader to take again: ``None`` for all those not resolved."""

    sequences: list[int] | None = None


class ReplayOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """What a reader did with a replay request: the entries it now took, and why it still cannot take the others."""

    reader: str
    resolved: list[int]
    unreadable: dict[int, str]


class ReplayReply(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The reader's answer: its ``result``, or an ``error`` saying why it did not replay."""

    result: ReplayOutcome | None = None
    error: str | None = None
