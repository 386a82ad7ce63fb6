"""A launch, or a signal, whose decision is appended while its client is cut off from NATS: the decision is sent to
none of the client's subscriptions, and the client looks for it in the log once it is connected again, instead of
waiting until it times out."""

from __future__ import annotations

import anyio

from plait.client import AsyncClient
from plait.core.events import SignalReceived
from plait.protocol import subjects
from plait_scheduler import SchedulerService
from tests import gate_workflows, workflows
from tests.helpers.cuttable_proxy import cuttable_proxy
from tests.helpers.running import running

EXECUTION = "decided-while-away"


async def test_a_launch_decided_while_its_client_was_cut_off_returns_once_it_is_back(nats_url: str) -> None:
    async with (
        cuttable_proxy(nats_url) as proxy,
        await AsyncClient.connect(nats_url) as direct,
        await AsyncClient.connect(proxy.url) as client,
    ):
        await client.register(workflows.add_two)
        launched: list[str] = []

        async def launch() -> None:
            handle = await client.launch(workflows.add_two, {"a": 1, "b": 2}, execution_id=EXECUTION, timeout=60)
            launched.append(handle.id)

        with anyio.fail_after(30):  # the launch's own 60 s would fail the test by then
            async with anyio.create_task_group() as tg:
                tg.start_soon(launch)
                while (await direct.js.stream_info(subjects.COMMANDS_STREAM)).state.messages == 0:  # noqa: ASYNC110
                    await anyio.sleep(0.01)  # no event says the launch is stored
                proxy.cut()
                async with running(SchedulerService(nats_url, replica="scheduler").run):
                    async for _ in direct.events(EXECUTION, until_terminal=False):
                        break  # decided, while the client is away
                    assert not launched
                    proxy.mend()
        assert launched == [EXECUTION]


async def test_a_signal_decided_while_its_client_was_cut_off_returns_once_it_is_back(nats_url: str) -> None:
    signalled: list[str] = []
    async with (
        cuttable_proxy(nats_url) as proxy,
        await AsyncClient.connect(nats_url) as direct,
        await AsyncClient.connect(proxy.url) as client,
    ):
        async with running(SchedulerService(nats_url, replica="scheduler").run):
            execution_id = (await direct.launch(gate_workflows.asks)).id
        stored = (await direct.js.stream_info(subjects.COMMANDS_STREAM)).state.last_seq

        async def signal() -> None:
            await client.signal(execution_id, "amount", 5, timeout=60)
            signalled.append("amount")

        with anyio.fail_after(30):  # the signal's own 60 s would fail the test by then
            async with anyio.create_task_group() as tg:
                tg.start_soon(signal)
                while (await direct.js.stream_info(subjects.COMMANDS_STREAM)).state.last_seq == stored:  # noqa: ASYNC110
                    await anyio.sleep(0.01)  # no event says the signal is stored
                proxy.cut()
                async with running(SchedulerService(nats_url, replica="scheduler").run):
                    async for decision in direct.events(execution_id, until_terminal=False):
                        if any(isinstance(e, SignalReceived) for e in decision.decision.events):
                            break  # the signal decided, while the client is away
                    assert not signalled
                    proxy.mend()
    assert signalled == ["amount"]
