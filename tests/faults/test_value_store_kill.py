"""An executor killed with SIGKILL while it stores a large output in the values bucket: another executor runs the
attempt again, stores the value (a half-written object is never read: an object exists once its last chunk and
its name are stored), and the execution succeeds once."""

from __future__ import annotations

import anyio
import pytest
from nats.aio.msg import Msg

from plait.core.events import NodeSucceeded
from plait.core.values import as_ref
from plait.protocol import subjects
from tests import large_value_workflows
from tests.faults import harness
from tests.helpers.states import final_state

pytestmark = pytest.mark.faults

SIZE = 50_000_000


async def test_killing_an_executor_while_it_stores_a_large_output_reruns_the_attempt_elsewhere(nats_url: str) -> None:
    env = harness.service_env(nats_url)
    processes = [harness.start_service("scheduler", env)]
    report = harness.FaultReport("executor killed while storing a 50 MB output (SIGKILL)", executions=1)
    with harness.stopped_at_exit(processes):
        victim = harness.start_service("executor", {**env, "PLAIT_REPLICA": "victim"})
        processes.append(victim)
        async with harness.connected(nats_url) as client:
            storing = anyio.Event()

            async def chunk_stored(msg: Msg) -> None:
                storing.set()

            chunks = await client.nc.subscribe(f"$O.{subjects.VALUES_BUCKET}.C.>", cb=chunk_stored)
            handle = await client.launch(large_value_workflows.pass_bytes, {"size": SIZE})
            with anyio.fail_after(60):
                await storing.wait()
            await harness.in_thread(victim.kill)
            await chunks.unsubscribe()
            report.faults += 1
            processes.append(harness.start_service("executor", {**env, "PLAIT_REPLICA": "survivor"}))
            await harness.wait_all(client, [handle.id], timeout=120, report=report)
            state = await final_state(client, handle.id, timeout=10)
            assert state.status == "succeeded" and state.outputs == {"result": SIZE}, state.error
            stored = as_ref(state.node_outputs["big_bytes"]["result"])
            assert stored is not None and stored.size > SIZE
            successes = [
                e.node
                async for record in client.events(handle.id)
                for e in record.decision.events
                if isinstance(e, NodeSucceeded)
            ]
            assert sorted(successes) == ["big_bytes", "byte_count"]
            report.problems = await harness.audit_log(client)
    report.check()
