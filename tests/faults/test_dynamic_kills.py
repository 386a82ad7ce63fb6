"""Dynamic nodes while scheduler replicas are killed with SIGKILL: each generated DAG is recorded once, its nodes
run and are decided by whichever replica is alive, the dynamic node succeeds with their outputs, and every history
keeps the invariants."""

from __future__ import annotations

import random
from pathlib import Path

import anyio
import pytest

from plait.core.events import AttemptStarted, DynamicExpanded
from plait.replay import replay
from tests import dynamic_workflows
from tests.faults import harness
from tests.helpers.reading import events_of, first_event

pytestmark = pytest.mark.faults

EXECUTIONS = 2
ITEMS = 2
CONCURRENCY = EXECUTIONS * ITEMS  # every generated node runs at once, waiting for the marker
KILL_EVERY_SECONDS = 1.0
DEADLINE = 90.0


async def test_generated_nodes_finish_though_scheduler_replicas_are_killed_while_they_run(
    nats_url: str, tmp_path: Path
) -> None:
    rng = random.Random(7)
    env = harness.service_env(nats_url)
    names = ["replica-a", "replica-b"]
    processes = [harness.start_service("scheduler", {**env, "PLAIT_REPLICA": name}) for name in names]
    report = harness.FaultReport("scheduler replicas killed (SIGKILL) while generated nodes run")
    marker = tmp_path / "go"
    with harness.stopped_at_exit(processes):
        processes.append(harness.start_service("executor", {**env, "PLAIT_CONCURRENCY": str(CONCURRENCY)}))
        async with harness.connected(nats_url) as client:
            workflow = dynamic_workflows.slow_sum_of_squares
            ids = [(await client.launch(workflow, {"n": ITEMS, "marker": str(marker)})).id for _ in range(EXECUTIONS)]
            for execution_id in ids:  # every DAG generated, and every generated node running, before any kill
                expanded = await first_event(client, execution_id, DynamicExpanded, timeout=DEADLINE)
                assert len(expanded.workflow.nodes) == ITEMS
                started = await events_of(client, execution_id, AttemptStarted, 2 + ITEMS, timeout=DEADLINE)
                assert all(event.node.startswith("slow_squares.") for event in started[2:])
            await harness.in_thread(processes[0].kill)  # a replica dies while the generated nodes run
            report.faults += 1
            marker.touch()  # they finish now: their results are decided by the replica left, and the restarted ones
            processes[0] = await harness.in_thread(
                harness.start_service, "scheduler", {**env, "PLAIT_REPLICA": names[0]}
            )
            async with anyio.create_task_group() as tg:

                async def kill_and_restart() -> None:
                    while True:
                        index = rng.randrange(len(names))
                        await harness.in_thread(processes[index].kill)
                        report.faults += 1
                        processes[index] = await harness.in_thread(
                            harness.start_service, "scheduler", {**env, "PLAIT_REPLICA": names[index]}
                        )
                        await anyio.sleep(KILL_EVERY_SECONDS)  # the fault's pace, not a synchronization

                tg.start_soon(kill_and_restart)
                await harness.wait_all(client, ids, timeout=DEADLINE, report=report)
                tg.cancel_scope.cancel()
        assert report.faults >= 1
        report.executions = len(ids)
        async with harness.connected(nats_url) as client:
            for execution_id in ids:
                state = replay(await client.records(execution_id))
                assert (state.status, state.outputs) == ("succeeded", {"result": 1 + 4}), execution_id
                generated = state.nodes["slow_squares"].generated or ()
                assert [state.nodes[n].status for n in generated] == ["succeeded"] * ITEMS
            report.problems = await harness.audit_log(client)
    report.check()
