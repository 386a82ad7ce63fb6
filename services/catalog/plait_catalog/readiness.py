"""The catalog's readiness and projection lag, checked every few seconds: PostgreSQL answers, and the projection
is within ``READY_LAG_SECONDS`` of the event log's end (every replica reads the one stored offset, leader or not)."""

from __future__ import annotations

from datetime import UTC, datetime

import anyio
import asyncpg
import nats.errors
import nats.js.errors
import structlog
from nats.js import JetStreamContext

from plait.metrics.health import Health
from plait.metrics.names import PROJECTION_LAG_EVENTS, PROJECTION_LAG_SECONDS
from plait.protocol import subjects
from plait_catalog import db
from plait_catalog.projection import stored_offset

log = structlog.get_logger()

CHECK_SECONDS = 2.0
CHECK_TIMEOUT_SECONDS = 3.0
READY_LAG_SECONDS = 60.0
"""A catalog whose projection is further behind than this answers queries with stale rows: not ready."""


async def check_readiness(health: Health, pool: asyncpg.Pool, js: JetStreamContext) -> None:
    """Until cancelled: check PostgreSQL and the projection's lag; set ``health`` and the lag gauges."""
    health.set_problem("postgresql", "not checked yet")
    while True:
        try:
            offset = await _offset(health, pool)
            if offset is not None:
                await _lag(health, js, offset)
        except Exception as exc:  # checking is side work: it never stops the catalog
            log.exception("readiness_check_failed")
            health.set_problem("readiness", f"the check itself failed ({exc!r})")
        else:
            health.set_problem("readiness", None)
        await anyio.sleep(CHECK_SECONDS)


async def _offset(health: Health, pool: asyncpg.Pool) -> int | None:
    try:
        with anyio.fail_after(CHECK_TIMEOUT_SECONDS):
            async with pool.acquire() as connection:
                offset = await stored_offset(connection)
    except (*db.CONNECTION_ERRORS, asyncpg.PostgresError, asyncpg.InternalClientError, TimeoutError) as exc:
        health.set_problem("postgresql", f"unreachable ({str(exc) or type(exc).__name__})")
        return None
    health.set_problem("postgresql", None)
    return offset


async def _lag(health: Health, js: JetStreamContext, offset: int) -> None:
    try:
        with anyio.fail_after(CHECK_TIMEOUT_SECONDS):
            last = (await js.stream_info(subjects.EVENTS_STREAM)).state.last_seq
            seconds = 0.0
            if last > offset:
                first = await js.get_msg(subjects.EVENTS_STREAM, seq=offset + 1, subject=">", next=True)
                seconds = (datetime.now(UTC) - first.time).total_seconds() if first.time else 0.0
    except (nats.errors.Error, nats.js.errors.Error, TimeoutError) as exc:
        health.set_problem("projection", f"the event log cannot be read ({exc!r})")
        return
    PROJECTION_LAG_EVENTS.set(max(0, last - offset))
    PROJECTION_LAG_SECONDS.set(max(0.0, seconds))
    behind = seconds > READY_LAG_SECONDS
    health.set_problem("projection", f"{last - offset} messages ({seconds:.0f} s) behind the log" if behind else None)
