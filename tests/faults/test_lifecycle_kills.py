"""Aborts, recoveries and relaunches while scheduler replicas are killed with SIGKILL: each is decided once from the
log, the aborted attempts are stopped and recorded, the recoveries rerun only what failed, and every history keeps
the invariants (nothing dispatched after an abort, stops recorded only after the end)."""

from __future__ import annotations

import random
from pathlib import Path

import anyio
import pytest

from plait.client import AsyncClient
from plait.replay import replay
from tests import lifecycle_workflows
from tests.faults import harness

pytestmark = pytest.mark.faults

EACH = 8
KILL_EVERY_SECONDS = 1.0
DEADLINE = 60.0


async def state_of(client: AsyncClient, execution_id: str) -> tuple[str, dict[str, int]]:
    """The execution's status, and each node's number of attempts, as its log has it."""
    state = replay(await client.records(execution_id))
    return state.status, {node.id: len(node.attempts) for node in state.nodes.values()}


async def test_aborts_and_recoveries_survive_killed_scheduler_replicas(nats_url: str, tmp_path: Path) -> None:
    rng = random.Random(13)
    env = harness.service_env(nats_url)
    names = ["replica-a", "replica-b"]
    processes = [harness.start_service("scheduler", {**env, "PLAIT_REPLICA": name}) for name in names]
    report = harness.FaultReport("scheduler replicas killed (SIGKILL) during aborts and recoveries")
    flag = tmp_path / "flag"
    flag.touch()
    with harness.stopped_at_exit(processes):
        processes.append(harness.start_service("executor", env))
        async with harness.connected(nats_url) as client:
            chain = lifecycle_workflows.chain
            failed = [(await client.launch(chain, {"x": i, "flag": str(flag)})).id for i in range(EACH)]
            await harness.wait_all(client, failed, timeout=DEADLINE, report=report)
            # Launched once the chains have failed: they would hold the executor's two workers for 300 s.
            lingering = [
                (await client.launch(lifecycle_workflows.lingers, {"directory": str(tmp_path), "seconds": 300.0})).id
                for _ in range(EACH)
            ]
            flag.unlink()
            async with anyio.create_task_group() as tg:

                async def kill_and_restart() -> None:
                    while True:  # the first kill at once: the commands below are decided while replicas die
                        index = rng.randrange(len(names))
                        await harness.in_thread(processes[index].kill)
                        report.faults += 1
                        processes[index] = await harness.in_thread(
                            harness.start_service, "scheduler", {**env, "PLAIT_REPLICA": names[index]}
                        )
                        await anyio.sleep(KILL_EVERY_SECONDS)  # the fault's pace, not a synchronization

                tg.start_soon(kill_and_restart)
                for execution_id in lingering:
                    await client.abort(execution_id, "fault test", aborted_by="faults@test")
                recovered = [(await client.recover(e, timeout=DEADLINE)).id for e in failed]
                relaunched = [(await client.relaunch(e, timeout=DEADLINE)).id for e in failed[:2]]
                await harness.wait_all(client, lingering + recovered + relaunched, timeout=DEADLINE, report=report)
                tg.cancel_scope.cancel()
        assert report.faults >= 1
        report.executions = len(failed) + len(lingering) + len(recovered) + len(relaunched)
        async with harness.connected(nats_url) as client:
            for execution_id in lingering:
                assert (await state_of(client, execution_id))[0] == "aborted"
            for execution_id in recovered:
                assert await state_of(client, execution_id) == (
                    "succeeded",
                    {"step": 0, "unless_flagged": 1, "step-1": 1},
                ), execution_id
            for execution_id in relaunched:
                assert await state_of(client, execution_id) == (
                    "succeeded",
                    {"step": 1, "unless_flagged": 1, "step-1": 1},
                ), execution_id
            report.problems = await harness.audit_log(client)
    report.check()
