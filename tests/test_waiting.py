"""``wait`` on a long execution: told of each decision by a subscription, it reads the log again only when a
decision may have been missed (after 1, 2, 4... silent seconds up to every 30, and after a reconnection), not every
silent second."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from plait import Timeout
from plait.client import AsyncClient
from plait.client.following import RECHECK_SECONDS, UNSEEN_DECISION_SECONDS, _Rechecks
from plait.core.state import Execution
from plait_scheduler import SchedulerService
from tests import workflows
from tests.helpers.restartable_nats import RestartableNats
from tests.helpers.running import running

WAITED_SECONDS = 3.5
OUTAGE_SECONDS = 0.5


class CountedLoads:
    """Counts the client's reads of an execution's log, delegating each to the real store."""

    def __init__(self, client: AsyncClient) -> None:
        self.count = 0
        self._load = client._store.load
        client._store.load = self  # type: ignore[method-assign]

    async def __call__(self, *args: Any, **kwargs: Any) -> Execution | None:
        self.count += 1
        return await self._load(*args, **kwargs)


@pytest.fixture
async def client(nats_url: str) -> AsyncIterator[AsyncClient]:
    # No executor: a launched execution stays running, its first attempt queued.
    async with running(SchedulerService(nats_url, replica="scheduler").run):
        async with await AsyncClient.connect(nats_url) as connected:
            yield connected


async def test_a_silent_wait_reads_the_log_after_1_2_4_silent_seconds_not_every_second(
    client: AsyncClient,
) -> None:
    execution = await client.launch(workflows.paused, {"seconds": 600.0})
    loads = CountedLoads(client)
    with pytest.raises(Timeout):
        await execution.wait(timeout=WAITED_SECONDS)
    assert loads.count == 3  # its first read, then after 1 and 2 more silent seconds (the next is after 4)


def test_the_silent_waits_between_reads_double_up_to_the_recheck_period() -> None:
    rechecks, now, reads = _Rechecks(reconnects=0, last_read=0.0), 0.0, []
    while now < 200:
        now += UNSEEN_DECISION_SECONDS  # each silent wait for a decision
        if rechecks.due(0, now):
            rechecks.reading(0, now)
            reads.append(now)
    assert reads[:7] == [1, 2, 4, 8, 16, 32, 62]
    assert all(b - a == RECHECK_SECONDS for a, b in itertools.pairwise(reads[6:]))
    assert rechecks.due(1, now + 0.5), "at once after a reconnection"


async def test_a_waiter_reads_the_log_again_once_its_connection_is_reestablished(tmp_path: Path) -> None:
    server = RestartableNats(tmp_path / "nats")
    server.start()
    try:
        async with (
            running(SchedulerService(server.url, replica="scheduler").run),
            await AsyncClient.connect(server.url) as client,
        ):
            execution = await client.launch(workflows.paused, {"seconds": 600.0})
            loads = CountedLoads(client)
            async with anyio.create_task_group() as tg:
                tg.start_soon(_wait_quietly, execution.id, client)
                with anyio.fail_after(10):
                    while loads.count < 2:  # noqa: ASYNC110  (a counter announces nothing)
                        await anyio.sleep(0.05)
                server.kill()
                await anyio.sleep(OUTAGE_SECONDS)  # the outage itself, not a wait for something to happen
                server.start()
                with anyio.fail_after(20):
                    while client.nc.stats["reconnects"] < 1:  # noqa: ASYNC110
                        await anyio.sleep(0.05)
                with anyio.fail_after(5):  # within a second or two of reconnecting, not RECHECK_SECONDS
                    while loads.count < 3:  # noqa: ASYNC110
                        await anyio.sleep(0.05)
                tg.cancel_scope.cancel()
    finally:
        server.kill()


async def _wait_quietly(execution_id: str, client: AsyncClient) -> None:
    await client.wait(execution_id)
