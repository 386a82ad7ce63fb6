"""The projecting leader's host goes silent (a network partition, a node lost: no FIN, no RST): PostgreSQL ends its
session soon after, and with it the projection lock, so a standby takes over instead of waiting for the OS to give
the connection up (2 hours and more)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import anyio
import asyncpg
import pytest
from anyio.abc import SocketAttribute, SocketStream
from nats.aio.client import Client as NATS

from plait import codec
from plait.core.events import TaskRegistered
from plait.core.model import TaskSpec
from plait.protocol import subjects
from plait_catalog import CatalogService, db
from plait_catalog.projection import stored_offset
from tests.helpers.catalog_log import DEADLINE, double, increment

TAKEOVER_SECONDS = db.LEADER_SILENCE_SECONDS + db.LEADER_PING_SECONDS + 10


class SilentProxy:
    """Forwards TCP to ``host``:``port`` until ``silent`` is set: then forwards nothing more, and keeps every socket
    open (no FIN)."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.silent = anyio.Event()
        self.released = anyio.Event()

    async def handle(self, downstream: SocketStream) -> None:
        async with downstream, await anyio.connect_tcp(self.host, self.port) as upstream:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._pipe, downstream, upstream)
                tg.start_soon(self._pipe, upstream, downstream)
                await self.released.wait()
                tg.cancel_scope.cancel()

    async def _pipe(self, source: SocketStream, sink: SocketStream) -> None:
        try:
            while True:
                chunk = await source.receive()
                if self.silent.is_set():
                    await anyio.sleep_forever()
                await sink.send(chunk)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            self.released.set()


@asynccontextmanager
async def silent_proxy(database_url: str) -> AsyncIterator[tuple[SilentProxy, str]]:
    """A ``SilentProxy`` to the database's server, and the database's URL through it."""
    parts = urlsplit(database_url)
    proxy = SilentProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(SocketAttribute.local_port)  # noqa: S610  anyio's, not Django's
    netloc = (parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else "") + f"127.0.0.1:{port}"
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, proxy.handle)
        try:
            yield proxy, parts._replace(netloc=netloc).geturl()
        finally:
            proxy.released.set()  # closes every proxied socket, so the silent leader's service can stop
            tg.cancel_scope.cancel()


async def register(nc: NATS, spec: TaskSpec) -> int:
    subject = subjects.registration_subject("alpha", "development", "task", spec.name, spec.version)
    payload = codec.encode(TaskRegistered("alpha", "development", spec))
    return (await nc.jetstream().publish(subject, payload, stream=subjects.EVENTS_STREAM)).seq


async def projected(pg: asyncpg.Connection, sequence: int) -> None:
    """Return once the projection's offset reaches ``sequence``, as PostgreSQL notifies it: not by a catalog query,
    which the silent replica may be the one to take, and never answer."""
    reached = anyio.Event()

    def notified(_connection: object, _pid: int, _channel: str, offset: object) -> None:
        if int(str(offset)) >= sequence:
            reached.set()

    await pg.add_listener(db.NOTIFY_CHANNEL, notified)
    try:
        if await stored_offset(pg) < sequence:
            with anyio.fail_after(DEADLINE):
                await reached.wait()
    finally:
        await pg.remove_listener(db.NOTIFY_CHANNEL, notified)


async def test_a_silently_partitioned_leader_is_replaced(
    nats_url: str, database_url: str, nc: NATS, pg: asyncpg.Connection
) -> None:
    async with silent_proxy(database_url) as (proxy, proxied_url):
        leader = CatalogService(nats_url, proxied_url, replica="partitioned")
        standby = CatalogService(nats_url, database_url, replica="standby")
        async with anyio.create_task_group() as tg:
            await tg.start(leader.run)
            with anyio.fail_after(DEADLINE):
                await leader.wait_leading()
            await tg.start(standby.run)
            await projected(pg, await register(nc, double.spec))

            proxy.silent.set()
            later = await register(nc, increment.spec)
            with anyio.fail_after(TAKEOVER_SECONDS):
                await standby.wait_leading()
            await projected(pg, later)
            holders = await pg.fetch(
                "SELECT a.application_name FROM pg_locks AS l JOIN pg_stat_activity AS a USING (pid)"
                " WHERE l.locktype = 'advisory' AND l.granted AND a.datname = current_database()"
            )
            proxy.released.set()  # the partition heals: the silent leader stops at once, not after its timeouts
            tg.cancel_scope.cancel()
    assert [h["application_name"] for h in holders] == ["plait-catalog-standby"]
    assert await pg.fetchval("SELECT count(*) FROM registry_entities") == 2


async def test_a_silent_leader_gives_its_session_up_and_goes_on_as_a_standby(
    nats_url: str, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its ping unanswered for ``LEADER_COMMAND_SECONDS``, the partitioned leader drops its session (closing it times
    out too) and waits to lead again: the catalog service goes on, it does not stop on the timeout."""
    monkeypatch.setattr(db, "LEADER_COMMAND_SECONDS", 1.0)
    async with silent_proxy(database_url) as (proxy, proxied_url):
        leader = CatalogService(nats_url, proxied_url, replica="partitioned")
        async with anyio.create_task_group() as tg:
            await tg.start(leader.run)
            with anyio.fail_after(DEADLINE):
                await leader.wait_leading()
            proxy.silent.set()
            with anyio.fail_after(db.LEADER_PING_SECONDS + 5 * db.LEADER_COMMAND_SECONDS + 10):
                while leader.is_leader:  # noqa: ASYNC110  no event says a leader let go
                    await anyio.sleep(0.05)
            proxy.released.set()
            tg.cancel_scope.cancel()
