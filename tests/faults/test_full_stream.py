"""The events stream full (a small ``max_bytes``, new messages refused) mid-run, then given room again: no
command is lost meanwhile, and every execution ends."""

from __future__ import annotations

import dataclasses

import anyio
import pytest
from nats.js.api import DiscardPolicy

from plait.adapters.connection import connect
from plait.protocol import subjects
from tests.faults import harness

pytestmark = pytest.mark.faults

EXECUTIONS = 30
ROOM_BYTES = 30_000  # a few executions' worth of decisions
FULL_SECONDS = 10.0


async def test_a_full_events_stream_loses_no_command(nats_url: str) -> None:
    env = harness.service_env(nats_url)
    processes = [harness.start_service("scheduler", env), harness.start_service("executor", env)]
    report = harness.FaultReport("events stream full")
    with harness.stopped_at_exit(processes):
        nc = await connect(nats_url, "fault-full-stream")
        try:
            js = nc.jetstream()
            info = await js.stream_info(subjects.EVENTS_STREAM)
            roomy = info.config
            async with harness.connected(nats_url) as client:
                ids = await harness.launch_many(client, EXECUTIONS, seed=5)
                info = await js.stream_info(subjects.EVENTS_STREAM)
                full = dataclasses.replace(roomy, max_bytes=info.state.bytes + ROOM_BYTES, discard=DiscardPolicy.NEW)
                await js.update_stream(full)
                report.faults += 1
                await anyio.sleep(FULL_SECONDS)  # how long the stream stays full: the fault itself
                await js.update_stream(roomy)
                report.executions = len(ids)
                await harness.wait_all(client, ids, timeout=20, report=report)
                report.problems = await harness.audit_log(client)
        finally:
            await nc.close()
    report.check()
