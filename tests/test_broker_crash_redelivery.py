"""A nats-server that crashes may lose the acknowledgements of its last fraction of a second (the commands and dispatch
streams keep messages by limits: an acknowledgement moves its consumer's ack floor, written to disk a moment later)
and then sends those dispatches again, as if new. An executor that has just reconnected looks each dispatch's
attempts up first: one that ended is not run again."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest
import structlog.testing
from nats.aio.msg import Msg

from plait import codec
from plait.client import AsyncClient
from plait.core.dispatch import dispatches_in
from plait.core.events import NodeSucceeded
from plait.protocol import subjects
from plait.protocol.headers import NATS_MSG_ID
from plait_executor import ExecutorService, runner
from plait_scheduler import SchedulerService
from tests import workflows
from tests.helpers.restartable_nats import RestartableNats
from tests.helpers.running import running

DEADLINE = 60.0


async def _until(logs: list[dict[str, Any]], event: str, **fields: Any) -> None:
    with anyio.fail_after(DEADLINE):
        while not any(e["event"] == event and all(e.get(k) == v for k, v in fields.items()) for e in logs):  # noqa: ASYNC110
            await anyio.sleep(0.02)


@pytest.mark.parametrize("checked", [True, False])
async def test_a_dispatch_sent_again_after_a_server_crash_does_not_run_an_ended_attempt_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, checked: bool
) -> None:
    if not checked:  # the same, without the look-up after a reconnection: the ended attempt runs again
        monkeypatch.setattr(runner, "AFTER_RECONNECTION_SECONDS", 0.0)
    server = RestartableNats(tmp_path / "nats")
    await anyio.to_thread.run_sync(server.start)
    # Three workers: the pause, and the chunk sent again (the pause beside the noop), each with one of its own.
    executor = ExecutorService(server.url, replica="executor", concurrency=3)
    try:
        with structlog.testing.capture_logs() as logs:
            async with running(SchedulerService(server.url, replica="scheduler").run, executor.run):
                async with await AsyncClient.connect(server.url) as client:
                    sent: dict[str, tuple[bytes, dict[str, str]]] = {}

                    async def keep(msg: Msg) -> None:  # by each node whose attempt the message carries
                        for dispatch in dispatches_in(codec.dispatch_record_decoder.decode(msg.data)):
                            sent[dispatch.node] = (msg.data, dict(msg.headers or {}))

                    await client.nc.subscribe(f"{subjects.DISPATCH_ROOT}.>", cb=keep)
                    await client.nc.flush()
                    execution_id = (await client.launch(workflows.quick_beside_pause)).id
                    await _until(logs, "attempt_succeeded", node="noop")

                await anyio.to_thread.run_sync(server.kill)
                await anyio.to_thread.run_sync(server.start)
                async with await AsyncClient.connect(server.url) as client:
                    await _until_decided(client, execution_id, "noop")  # its result may not be decided yet
                    data, headers = sent["noop"]  # as the crashed server would send it again: the same record
                    headers[NATS_MSG_ID] = uuid.uuid4().hex  # (a copy published again must pass the duplicate window)
                    await client.js.publish(
                        subjects.dispatch_subject("local", "default"),
                        data,
                        headers=headers,
                        stream=subjects.DISPATCH_STREAM,
                    )
                    if checked:
                        await _until(logs, "dispatch_skipped", reason="its attempt ended")
                    else:
                        with anyio.fail_after(DEADLINE):
                            while len(_started(logs, "noop")) < 2:  # noqa: ASYNC110
                                await anyio.sleep(0.02)
                    await client.abort(execution_id, "done")
        started = len(_started(logs, "noop"))  # without the check, also the server's own copy, when it lost the ack
        assert started == 1 if checked else started >= 2
    finally:
        await anyio.to_thread.run_sync(server.kill)


async def _until_decided(client: AsyncClient, execution_id: str, node: str) -> None:
    """Once the execution's log shows ``node`` succeeded: only then can an executor know its attempt ended."""
    with anyio.fail_after(DEADLINE):
        async for stored in client.events(execution_id, until_terminal=False):
            if any(isinstance(e, NodeSucceeded) and e.node == node for e in stored.decision.events):
                return


def _started(logs: list[dict[str, Any]], node: str) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == "attempt_started" and e.get("node") == node]
