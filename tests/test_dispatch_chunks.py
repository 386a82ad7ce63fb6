"""Dispatch chunks on real servers: a decision's attempts for one queue travel in few messages, and an executor
that stops holding a chunk hands back only the attempts it did not run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import structlog.testing

from plait.client import AsyncClient
from plait.core.events import NodeSucceeded
from plait.protocol import subjects
from plait_executor import ExecutorService
from plait_scheduler import SchedulerService
from tests import chunk_workflows
from tests.helpers.queues import waiting
from tests.helpers.running import Running, running
from tests.helpers.states import final_state

DEADLINE = 60.0


async def successes(client: AsyncClient, execution_id: str) -> list[str]:
    return [
        e.node
        async for stored in client.events(execution_id)
        for e in stored.decision.events
        if isinstance(e, NodeSucceeded)
    ]


async def until_logged(logs: list[dict[str, Any]], event: str) -> None:
    with anyio.fail_after(DEADLINE):
        while True:
            if any(entry["event"] == event for entry in logs):
                return
            await anyio.sleep(0.02)


async def test_a_fan_out_runs_with_a_dispatch_message_per_chunk_of_its_attempts(nats_url: str) -> None:
    scheduler = SchedulerService(nats_url, replica="scheduler", dispatch_chunk_attempts=16, dispatch_least_chunks=1)
    executor = ExecutorService(nats_url, replica="executor", concurrency=2)
    async with running(scheduler.run, executor.run), await AsyncClient.connect(nats_url) as client:
        execution_id = (await client.launch(chunk_workflows.wide)).id
        state = await final_state(client, execution_id, timeout=DEADLINE)
        stored = (await client.js.stream_info(subjects.DISPATCH_STREAM)).state
        left = await waiting(client.js, subjects.DISPATCH_STREAM)
        nodes = await successes(client, execution_id)
    assert state.status == "succeeded", state.error
    assert len(nodes) == len(set(nodes)) == 41
    assert stored.last_seq == 4, "40 attempts in chunks of 16, 16 and 8, and the join alone"
    assert left == 0, "each acknowledged once its attempts' results were stored"


async def test_a_stopping_executor_hands_back_a_chunks_untaken_attempts_and_none_runs_twice(
    nats_url: str, tmp_path: Path
) -> None:
    gate, runs = tmp_path / "gate", tmp_path / "runs"
    scheduler = SchedulerService(nats_url, replica="scheduler", dispatch_least_chunks=1)
    first = ExecutorService(nats_url, replica="first", concurrency=1, grace_seconds=DEADLINE)
    with structlog.testing.capture_logs() as logs:
        async with running(scheduler.run), await AsyncClient.connect(nats_url) as client:
            stopping = await Running(first.run).start()
            execution_id = (
                await client.launch(chunk_workflows.gate_then_quick, {"gate": str(gate), "runs": str(runs)})
            ).id
            await chunk_workflows.until_run(str(runs), {"g"})  # its one worker is held by the gated node
            async with anyio.create_task_group() as tg:
                tg.start_soon(stopping.stop)  # the gated attempt finishes in the grace period; the rest go back
                await until_logged(logs, "dispatch_handed_back")
                gate.write_text("open")
            second = ExecutorService(nats_url, replica="second", concurrency=2)
            async with running(second.run):
                state = await final_state(client, execution_id, timeout=DEADLINE)
            nodes = await successes(client, execution_id)
    assert state.status == "succeeded", state.error
    assert sorted(chunk_workflows.runs_of(str(runs))) == ["g", "q0", "q1", "q2", "q3"], "each attempt ran once"
    assert len(nodes) == len(set(nodes)) == 6
    events = [entry["event"] for entry in logs]
    assert "dispatch_partly_handed_back" in events
    skipped = [
        entry for entry in logs if entry["event"] == "dispatch_skipped" and entry["reason"] == "its attempt ended"
    ]
    assert len(skipped) >= 1, "the redelivered chunk skipped the attempt its first executor had run"
    assert state.nodes["gated"].attempts[0].worker == "first"
