"""``plait.catalog.rebuild``: every catalog replica hears it; the projection's leader empties the catalog, replays the
event log into it and answers on the request's inbox: progress messages, then one result or error."""

from __future__ import annotations

from typing import Literal

import msgspec


class RebuildRequest(msgspec.Struct, frozen=True):
    """Asks for a rebuild; it has no parameters."""


class RebuildProgress(msgspec.Struct, kw_only=True):
    replica: str
    target: int  # the stream's last sequence when the rebuild began: it ends once projected up to there
    sequence: int  # the last sequence replayed so far
    messages: int  # messages replayed so far


class RebuildResult(msgspec.Struct, kw_only=True):
    replica: str
    target: int
    sequence: int
    messages: int
    rows: dict[str, int]  # rows of each projected table once caught up
    seconds: float


class RebuildError(msgspec.Struct, kw_only=True):
    type: Literal["refused", "failed"]  # refused: not the leader, or a rebuild is running; failed: stopped midway
    message: str


class RebuildReply(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One message on the inbox: exactly one of its fields is set. The last is a ``result`` or an ``error``."""

    progress: RebuildProgress | None = None
    result: RebuildResult | None = None
    error: RebuildError | None = None
