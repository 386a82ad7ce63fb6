"""The catalog waits out PostgreSQL refusing for now, as it waits out PostgreSQL being away: a read-only server (a
failed-over primary, a standby being promoted), too many connections, a full disk."""

from __future__ import annotations

import anyio
import asyncpg
import pytest
import structlog
from nats.aio.client import Client as NATS
from structlog.typing import EventDict

from plait import codec
from plait.core.events import TaskRegistered
from plait.protocol import subjects
from plait_catalog import CatalogService, db
from plait_catalog.projection import stored_offset
from tests.helpers.catalog_log import DEADLINE, caught_up, double

LEADER_SESSION = """
SELECT activity.pid FROM pg_locks AS lock JOIN pg_stat_activity AS activity USING (pid)
WHERE lock.locktype = 'advisory' AND lock.granted AND activity.datname = current_database()
"""


async def register(nc: NATS) -> int:
    subject = subjects.registration_subject("alpha", "development", "task", double.spec.name, double.spec.version)
    ack = await nc.jetstream().publish(
        subject, codec.encode(TaskRegistered("alpha", "development", double.spec)), stream=subjects.EVENTS_STREAM
    )
    return ack.seq


class Noticing:
    """A structlog processor that sets ``seen`` once ``event`` is logged with ``error`` in its error."""

    def __init__(self, event: str, error: str) -> None:
        self.event = event
        self.error = error
        self.seen = anyio.Event()

    def __call__(self, logger: object, method: str, event_dict: EventDict) -> EventDict:
        if event_dict["event"] == self.event and self.error in event_dict.get("error", ""):
            self.seen.set()
        return event_dict


async def test_a_leader_whose_database_turns_read_only_waits_and_projects_once_it_is_writable(
    nats_url: str, database_url: str, nc: NATS, pg: asyncpg.Connection
) -> None:
    database = await pg.fetchval("SELECT current_database()")
    interrupted = Noticing("projection_interrupted", "read-only transaction")
    with structlog.testing.capture_logs(processors=[interrupted]):
        async with anyio.create_task_group() as tg:
            catalog = CatalogService(nats_url, database_url, replica="failed-over")
            await tg.start(catalog.run)
            with anyio.fail_after(DEADLINE):
                await catalog.wait_leading()
            await pg.execute(f'ALTER DATABASE "{database}" SET default_transaction_read_only = on')
            await pg.execute("SELECT pg_terminate_backend(pid) FROM (" + LEADER_SESSION + ") AS leader")
            sequence = await register(nc)
            with anyio.fail_after(DEADLINE):
                await interrupted.seen.wait()
            assert await stored_offset(pg) < sequence

            await pg.execute(f'ALTER DATABASE "{database}" RESET default_transaction_read_only')
            await caught_up(nc, sequence)
            tg.cancel_scope.cancel()
    assert await pg.fetchval("SELECT count(*) FROM registry_entities") == 1


@pytest.mark.parametrize("refusal", [asyncpg.TooManyConnectionsError, asyncpg.DiskFullError])
async def test_postgresql_refusing_for_now_is_waited_out(refusal: type[asyncpg.PostgresError]) -> None:
    """PostgreSQL's refusals for lack of resources cannot be provoked here: the tests connect as a superuser, whom
    connection limits spare, on a disk with room."""
    refused: list[int] = []

    async def attempt() -> str:
        if not refused:
            refused.append(1)
            raise refusal("refused for now")
        return "done"

    with structlog.testing.capture_logs() as logs:
        assert await db.when_reachable(attempt, "a test") == "done"
    assert [e["event"] for e in logs] == ["postgres_unavailable"]
