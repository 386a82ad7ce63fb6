"""Cache queries: the schedulers' look-up on the hot path, and listing and showing entries for people."""

from __future__ import annotations

from plait.protocol.cache import (
    CacheEntryDetail,
    CacheEntryList,
    CacheEntryShown,
    CacheEntrySummary,
    CacheLookupManyReply,
    CacheLookupManyRequest,
    CacheLookupReply,
    CacheLookupRequest,
    ListCacheEntries,
    ShowCacheEntry,
)
from plait.protocol.queries import ErrorReply, error_reply
from plait_catalog.db import Connection

_LOOKUP = """
SELECT outputs, execution_id, node_id FROM cache_entries WHERE project = $1 AND domain = $2 AND cache_key = $3
"""

_LOOKUP_MANY = """
SELECT found.cache_key, found.outputs, found.execution_id, found.node_id FROM unnest($3::text[]) AS wanted(cache_key)
CROSS JOIN LATERAL (
    SELECT cache_key, outputs, execution_id, node_id FROM cache_entries
    WHERE project = $1 AND domain = $2 AND cache_key = wanted.cache_key LIMIT 1
) AS found
"""  # one index look-up per key, whatever the table's statistics say (see projection._read_by_keys)

_COLUMNS = "cache_key, task_name, task_version, execution_id, node_id AS node, attempt_id, created_at"

_LIST = f"""
SELECT {_COLUMNS} FROM cache_entries
WHERE project = $1 AND domain = $2 AND ($3::text IS NULL OR task_name = $3)
ORDER BY created_at DESC, cache_key LIMIT $4
"""  # noqa: S608  constant fragments (table and column names); values are $n parameters

_SHOW = f"""
SELECT {_COLUMNS}, project, domain, outputs, sequence FROM cache_entries
WHERE project = $1 AND domain = $2 AND cache_key = $3
"""  # noqa: S608  constant fragments (table and column names); values are $n parameters


async def lookup(connection: Connection, request: CacheLookupRequest) -> CacheLookupReply:
    """One primary-key read: the entry's outputs and producer, or ``found=False``."""
    row = await connection.fetchrow(_LOOKUP, request.project, request.domain, request.cache_key)
    if row is None:
        return CacheLookupReply(found=False)
    return CacheLookupReply(found=True, outputs=row["outputs"], execution_id=row["execution_id"], node=row["node_id"])


async def lookup_many(connection: Connection, request: CacheLookupManyRequest) -> CacheLookupManyReply:
    """One indexed read for all the keys: the entries found."""
    rows = await connection.fetch(_LOOKUP_MANY, request.project, request.domain, request.cache_keys)
    entries = {
        row["cache_key"]: CacheLookupReply(
            found=True, outputs=row["outputs"], execution_id=row["execution_id"], node=row["node_id"]
        )
        for row in rows
    }
    return CacheLookupManyReply(entries=entries)


async def list_entries(connection: Connection, request: ListCacheEntries) -> CacheEntryList:
    rows = await connection.fetch(_LIST, request.project, request.domain, request.task, request.limit)
    return CacheEntryList(entries=[CacheEntrySummary(**dict(row)) for row in rows])


async def show_entry(connection: Connection, request: ShowCacheEntry) -> CacheEntryShown | ErrorReply:
    row = await connection.fetchrow(_SHOW, request.project, request.domain, request.cache_key)
    if row is None:
        where = f"{request.project}/{request.domain}"
        return error_reply("not_found", f"cache key {request.cache_key} has no entry in {where}")
    return CacheEntryShown(entry=CacheEntryDetail(**dict(row)))
