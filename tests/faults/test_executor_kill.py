"""An executor killed with SIGKILL while its attempts run: another executor runs them, each result kept once."""

from __future__ import annotations

import pytest

from plait.core.events import NodeSucceeded
from tests import workflows
from tests.faults import harness
from tests.helpers.states import final_state

pytestmark = pytest.mark.faults

EXECUTIONS = 4


async def test_killing_an_executor_mid_attempt_reruns_its_attempts_elsewhere(nats_url: str) -> None:
    env = harness.service_env(nats_url)
    processes = [harness.start_service("scheduler", env)]
    report = harness.FaultReport("executor killed mid-attempt (SIGKILL)", executions=EXECUTIONS)
    with harness.stopped_at_exit(processes):
        victim = harness.start_service("executor", {**env, "PLAIT_REPLICA": "victim"})
        processes.append(victim)
        async with harness.connected(nats_url) as client:
            ids = [(await client.launch(workflows.paused, {"seconds": 3.0})).id for _ in range(EXECUTIONS)]
            await harness.in_thread(victim.wait_for_event, "attempt_started")
            await harness.in_thread(victim.kill)
            report.faults += 1
            processes.append(harness.start_service("executor", {**env, "PLAIT_REPLICA": "survivor"}))
            await harness.wait_all(client, ids, timeout=90, report=report)
            for execution_id in ids:
                state = await final_state(client, execution_id, timeout=10)
                assert state.status == "succeeded", state.error
                successes = [
                    e
                    async for stored in client.events(execution_id)
                    for e in stored.decision.events
                    if isinstance(e, NodeSucceeded)
                ]
                assert len(successes) == 1
            report.problems = await harness.audit_log(client)
    report.check()
