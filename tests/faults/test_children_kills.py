"""Child executions while scheduler replicas are killed with SIGKILL: each child is launched once, its end reaches its
parent whichever replica decides it, every parent gets its child's output, and every history keeps the invariants."""

from __future__ import annotations

import random

import pytest

from plait.core.children import child_execution_id
from plait.replay import replay
from tests import child_workflows
from tests.faults import harness

pytestmark = pytest.mark.faults

WAVES = 4
PER_WAVE = 5
DEADLINE = 90.0


async def test_children_are_launched_once_and_report_back_though_scheduler_replicas_are_killed(nats_url: str) -> None:
    rng = random.Random(11)
    env = harness.service_env(nats_url)
    names = ["replica-a", "replica-b"]
    processes = [harness.start_service("scheduler", {**env, "PLAIT_REPLICA": name}) for name in names]
    report = harness.FaultReport("scheduler replicas killed (SIGKILL) while child executions run")
    with harness.stopped_at_exit(processes):
        processes.append(harness.start_service("executor", env))
        async with harness.connected(nats_url) as client:
            await client.register(child_workflows.double_plan)
            parents: list[str] = []
            for wave in range(WAVES):  # each wave's children are launched and reported while a replica dies
                parents += [
                    (await client.launch(child_workflows.uses_child, {"n": n})).id
                    for n in range(wave * PER_WAVE, (wave + 1) * PER_WAVE)
                ]
                index = rng.randrange(len(names))
                await harness.in_thread(processes[index].kill)
                report.faults += 1
                processes[index] = await harness.in_thread(
                    harness.start_service, "scheduler", {**env, "PLAIT_REPLICA": names[index]}
                )
            await harness.wait_all(client, parents, timeout=DEADLINE, report=report)
            children = [child_execution_id(parent, "double_plan") for parent in parents]
            await harness.wait_all(client, children, timeout=DEADLINE, report=report)
        assert report.faults >= 1
        report.executions = len(parents) + len(children)
        async with harness.connected(nats_url) as client:
            for n, (parent, child) in enumerate(zip(parents, children, strict=True)):
                state = replay(await client.records(parent))
                assert (state.status, state.outputs) == ("succeeded", {"result": 2 * n + 1}), parent
                assert state.nodes["double_plan"].child_execution == child
                child_state = replay(await client.records(child))
                assert (child_state.status, child_state.parent_execution) == ("succeeded", parent), child
            launched = [e for e in await client.execution_ids() if e in children]
            assert sorted(launched) == sorted(children), "one child per parent, none twice"
            report.problems = await harness.audit_log(client)
    report.check()
