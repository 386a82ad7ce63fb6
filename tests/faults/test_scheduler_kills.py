"""Three scheduler replicas, one killed with SIGKILL every 2 s and restarted, through waves of at least 200
executions."""

from __future__ import annotations

import random

import anyio
import pytest

from tests.faults import harness

pytestmark = pytest.mark.faults

MIN_EXECUTIONS = 200
MIN_KILLS = 6
KILL_EVERY_SECONDS = 2.0


async def test_killing_a_random_scheduler_replica_every_few_seconds_loses_nothing(nats_url: str) -> None:
    rng = random.Random(10)
    env = harness.service_env(nats_url)
    names = ["replica-a", "replica-b", "replica-c"]
    processes = [harness.start_service("scheduler", {**env, "PLAIT_REPLICA": name}) for name in names]
    report = harness.FaultReport("scheduler replicas killed (SIGKILL)")
    with harness.stopped_at_exit(processes):
        processes.append(harness.start_service("executor", env))
        async with harness.connected(nats_url) as client, anyio.create_task_group() as tg:

            async def kill_and_restart() -> None:
                while True:
                    await anyio.sleep(KILL_EVERY_SECONDS)  # the fault's pace, not a synchronization
                    index = rng.randrange(len(names))
                    await harness.in_thread(processes[index].kill)
                    report.faults += 1
                    processes[index] = await harness.in_thread(
                        harness.start_service, "scheduler", {**env, "PLAIT_REPLICA": names[index]}
                    )

            tg.start_soon(kill_and_restart)
            while report.executions < MIN_EXECUTIONS or report.faults < MIN_KILLS:  # waves while replicas die
                wave = await harness.launch_many(client, 10, seed=report.executions)
                report.executions += len(wave)
                await harness.wait_all(client, wave, timeout=30, report=report)
            tg.cancel_scope.cancel()
        async with harness.connected(nats_url) as client:
            report.problems = await harness.audit_log(client)
    report.check()
