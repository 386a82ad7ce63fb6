"""The task cache of a project and domain: its entries, as the catalog lists them, and clearing them."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from plait.adapters.cachelog import CacheLog
from plait.adapters.nats_errors import as_plait_errors
from plait.client.catalog import QUERY_TIMEOUT_SECONDS, CatalogClient
from plait.client.connection import readable
from plait.core.cachelog import CacheCleared, CacheFilled, CacheReserved
from plait.errors import ConflictError
from plait.protocol import subjects
from plait.protocol.cache import (
    CacheEntryDetail,
    CacheEntryList,
    CacheEntryShown,
    CacheEntrySummary,
    ListCacheEntries,
    ShowCacheEntry,
)


class CacheClearing(msgspec.Struct, kw_only=True):
    """What ``clear_cache`` did: the keys it cleared, and why it left the others alone."""

    cleared: list[str] = msgspec.field(default_factory=list)
    skipped: dict[str, str] = msgspec.field(default_factory=dict)


class CacheAdmin(CatalogClient):
    async def cache_entries(
        self, task: str | None = None, limit: int = 50, *, min_sequence: int = 0, timeout: float = QUERY_TIMEOUT_SECONDS
    ) -> list[CacheEntrySummary]:
        """Entries of this project and domain's cache (of one task, if given), newest first."""
        request = ListCacheEntries(
            project=self.project, domain=self.domain, task=task, limit=limit, min_sequence=min_sequence
        )
        return (await self._ask(subjects.CATALOG_LIST_CACHE_ENTRIES, request, CacheEntryList, timeout)).entries

    async def cache_entry(
        self, key: str, *, min_sequence: int = 0, timeout: float = QUERY_TIMEOUT_SECONDS
    ) -> CacheEntryDetail:
        """One cache entry with its outputs and the execution, node and attempt that produced them."""
        request = ShowCacheEntry(project=self.project, domain=self.domain, cache_key=key, min_sequence=min_sequence)
        return (await self._ask(subjects.CATALOG_SHOW_CACHE_ENTRY, request, CacheEntryShown, timeout)).entry

    async def clear_cache(self, keys: list[str], cleared_by: str = "") -> CacheClearing:
        """Clear each filled key, so its next look-up computes it again; a key that is reserved (being
        computed), free, or that changed meanwhile is left alone and reported in ``skipped``."""
        outcome = CacheClearing()
        for key in keys:
            try:
                log = CacheLog(self.js, self.project, self.domain, key)
            except ValueError as exc:  # not a possible cache key
                outcome.skipped[key] = str(exc)
                continue
            with as_plait_errors(f"clearing cache key {key}"), readable(f"clearing cache key {key}"):
                sequence, record = await log.last()
                if not isinstance(record, CacheFilled):
                    outcome.skipped[key] = _not_clearable(record)
                    continue
                cleared = CacheCleared(
                    project=self.project,
                    domain=self.domain,
                    cache_key=key,
                    cleared_by=cleared_by,
                    at=datetime.now(UTC),
                )
                try:
                    await log.append(cleared, expected=sequence)
                except ConflictError:
                    outcome.skipped[key] = "it changed while being cleared; look at it again"
                    continue
            outcome.cleared.append(key)
        return outcome


def _not_clearable(record: object) -> str:
    if isinstance(record, CacheReserved):
        return f"it is being computed by {record.execution_id}/{record.node}"
    return "it has no entry"
