"""Following an execution across a restart of its nats-server: the consumer that pushed its decisions is gone with
the server, and the follower makes a new one as soon as it is connected again, from the decision after the last it
gave (nothing skipped, nothing twice)."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from plait.adapters import scoped_reads
from plait.client import AsyncClient
from tests.helpers.catalog_log import DOMAIN, PROJECT, on_a_restartable_server


async def test_a_follower_goes_on_at_once_after_the_server_restarted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Heartbeats 30 s apart: noticing the lost consumer by their silence alone would take 90 s.
    monkeypatch.setattr(scoped_reads, "FOLLOW_HEARTBEAT_SECONDS", 30.0)
    sequences: list[int] = []
    async with (
        on_a_restartable_server(tmp_path / "nats") as (server, _, log),
        await AsyncClient.connect(server.url, PROJECT, DOMAIN) as client,
    ):
        launched = await log.launch("followed", 1)
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:

                async def follow() -> None:
                    async for stored in client.events("followed", until_terminal=False):
                        sequences.append(stored.sequence)

                tg.start_soon(follow)
                while sequences != [launched]:  # noqa: ASYNC110  the follower's first decision
                    await anyio.sleep(0.01)
                await anyio.to_thread.run_sync(server.kill)
                await anyio.to_thread.run_sync(server.start)
                started = await log.start("followed", "double")
                while len(sequences) < 2:  # noqa: ASYNC110  no event says the follower has it
                    await anyio.sleep(0.01)
                tg.cancel_scope.cancel()
    assert sequences == [launched, started]
