"""A quarantine replay applies its subject's history up to the projection's offset, reading the subject only once
the offset is locked: the leader cannot project a later record of the subject in between, which would have the
replay apply a prefix of the history over rows that hold its end (a cleared cache entry served again)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest

from plait import codec
from plait.core.cachelog import CacheCleared
from plait.protocol import subjects
from plait.protocol.cache import CacheLookupRequest
from plait_catalog import cache_queries, db
from plait_catalog.migrations import migrate
from plait_catalog.projection import PROJECTION, StoredMessage, apply_again, apply_batch, stored_offset
from tests.helpers.catalog_log import cache_filled

AT = datetime(2031, 3, 1, 12, 0, tzinfo=UTC)
SUBJECT = subjects.cache_entry_subject("alpha", "development", "k1")
FILL = StoredMessage(1, SUBJECT, codec.encode(cache_filled("alpha", AT)), AT)
CLEAR = StoredMessage(
    2,
    SUBJECT,
    codec.encode(CacheCleared(project="alpha", domain="development", cache_key="k1", cleared_by="op", at=AT)),
    AT,
)


async def nothing_kept_aside(message: StoredMessage, reason: str) -> None:
    raise AssertionError(f"message {message.sequence} kept aside: {reason}")


@pytest.fixture
async def connections(database_url: str) -> AsyncIterator[tuple[asyncpg.Connection, asyncpg.Connection]]:
    first = await db.connect(database_url, "test-replay")
    second = await db.connect(database_url, "test-leader")
    await migrate(first)
    yield first, second
    await first.close()
    await second.close()


async def test_a_replay_reads_its_subject_while_the_offset_is_locked_and_keeps_what_the_log_cleared(
    connections: tuple[asyncpg.Connection, asyncpg.Connection],
) -> None:
    replay, leader = connections
    await apply_batch(leader, [FILL, CLEAR], keep_aside=nothing_kept_aside)
    assert await stored_offset(leader) == 2
    offsets_seen: list[int] = []

    async def read() -> list[StoredMessage]:
        """The subject as the log holds it, read while the leader, trying to move the offset on, would wait."""
        with pytest.raises(asyncpg.LockNotAvailableError):
            await leader.fetchval(
                "SELECT sequence FROM projection_offsets WHERE projection = $1 FOR UPDATE NOWAIT", PROJECTION
            )
        offsets_seen.append(await stored_offset(leader))
        return [FILL, CLEAR]

    await apply_again(replay, read, {1})

    assert offsets_seen == [2]
    found = await cache_queries.lookup(
        replay, CacheLookupRequest(project="alpha", domain="development", cache_key="k1")
    )
    assert not found.found, "the catalog serves an entry its log cleared"
