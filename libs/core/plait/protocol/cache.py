"""Catalog queries of the cache: the schedulers' look-ups on the hot path, and listing and showing entries."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec

from plait.protocol.queries import NonEmpty, StreamSequence

MAX_KEYS_PER_LOOKUP = 1_000


class CacheLookupRequest(msgspec.Struct, frozen=True, kw_only=True):
    """``plait.catalog.cache.lookup``: is there an entry for this key?"""

    project: str
    domain: str
    cache_key: str


class CacheLookupReply(msgspec.Struct, frozen=True, kw_only=True):
    found: bool
    outputs: dict[str, Any] | None = None
    execution_id: str = ""
    node: str = ""


class CacheLookupManyRequest(msgspec.Struct, frozen=True, kw_only=True):
    """``plait.catalog.cache.lookup_many``: the entries of several keys at once (a decision's look-ups)."""

    project: str
    domain: str
    cache_keys: Annotated[list[str], msgspec.Meta(max_length=MAX_KEYS_PER_LOOKUP)]


class CacheLookupManyReply(msgspec.Struct, frozen=True, kw_only=True):
    entries: dict[str, CacheLookupReply]  # the keys found, each with ``found=True``


class ListCacheEntries(msgspec.Struct, frozen=True, kw_only=True):
    """``plait.catalog.cache.list``: the newest entries of a project and domain, optionally of one task."""

    project: NonEmpty
    domain: NonEmpty
    task: str | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 50
    min_sequence: StreamSequence = 0


class ShowCacheEntry(msgspec.Struct, frozen=True, kw_only=True):
    """``plait.catalog.cache.show``: one entry, with its outputs."""

    project: NonEmpty
    domain: NonEmpty
    cache_key: NonEmpty
    min_sequence: StreamSequence = 0


class CacheEntrySummary(msgspec.Struct, kw_only=True):
    cache_key: str
    task_name: str
    task_version: str
    execution_id: str
    node: str
    attempt_id: str
    created_at: datetime


class CacheEntryDetail(CacheEntrySummary, kw_only=True):
    project: str
    domain: str
    outputs: dict[str, Any]
    sequence: int  # the stream sequence of the fill


class CacheEntryList(msgspec.Struct, kw_only=True):
    entries: list[CacheEntrySummary]


class CacheEntryShown(msgspec.Struct, kw_only=True):
    entry: CacheEntryDetail
