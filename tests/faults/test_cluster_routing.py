"""The only executor of a cluster killed with SIGKILL mid-attempt: its work waits for that cluster (no other
cluster's executor takes it), and runs once another executor of it starts; the log keeps its invariants (each
attempt queued for the cluster the precedence decides)."""

from __future__ import annotations

import pytest

from tests import cluster_workflows
from tests.faults import harness
from tests.helpers.states import final_state

pytestmark = pytest.mark.faults

EXECUTIONS = 3


async def test_killing_a_clusters_only_executor_leaves_its_work_for_that_cluster(nats_url: str) -> None:
    env = harness.service_env(nats_url)
    processes = [harness.start_service("scheduler", env)]
    report = harness.FaultReport("a cluster's only executor killed mid-attempt (SIGKILL)", executions=EXECUTIONS)
    with harness.stopped_at_exit(processes):
        processes.append(harness.start_service("executor", {**env, "PLAIT_CLUSTER": "east", "PLAIT_REPLICA": "east"}))
        victim = harness.start_service("executor", {**env, "PLAIT_CLUSTER": "west", "PLAIT_REPLICA": "victim"})
        processes.append(victim)
        async with harness.connected(nats_url) as client:
            ids = [
                (await client.launch(cluster_workflows.east_then_slow_west, {"x": n, "seconds": 3.0})).id
                for n in range(EXECUTIONS)
            ]
            await harness.in_thread(victim.wait_for_event, "attempt_started")
            await harness.in_thread(victim.kill)
            report.faults += 1
            west = {**env, "PLAIT_CLUSTER": "west", "PLAIT_REPLICA": "survivor"}
            processes.append(harness.start_service("executor", west))
            await harness.wait_all(client, ids, timeout=120, report=report)
            for n, execution_id in enumerate(ids):
                state = await final_state(client, execution_id, timeout=10)
                assert (state.status, state.outputs) == ("succeeded", {"result": (n + 1) * 10}), state.error
                workers = {
                    node.task.rsplit(".", 1)[-1]: {a.worker for a in node.attempts if a.worker}
                    for node in state.nodes.values()
                }
                assert workers["in_east"] == {"east"}
                assert workers["slow_in_west"] <= {"victim", "survivor"} and workers["slow_in_west"]
            report.problems = await harness.audit_log(client)
    report.check()
