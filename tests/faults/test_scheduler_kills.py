"""Three scheduler replicas, one killed with SIGKILL every few seconds and restarted, through 100 executions."""

from __future__ import annotations

import random

import anyio
import pytest

from tests.faults.harness import (
    FaultReport,
    audit_log,
    connected,
    in_thread,
    launch_many,
    service_env,
    start_service,
    stopped_at_exit,
    wait_all,
)

pytestmark = pytest.mark.faults

MIN_EXECUTIONS = 200
MIN_KILLS = 6
KILL_EVERY_SECONDS = 2.0


async def test_killing_a_random_scheduler_replica_every_few_seconds_loses_nothing(nats_url: str) -> None:
    rng = random.Random(10)
    env = service_env(nats_url)
    names = ["replica-a", "replica-b", "replica-c"]
    processes = [start_service("scheduler", {**env, "PLAIT_REPLICA": name}) for name in names]
    report = FaultReport("scheduler replicas killed (SIGKILL)")
    with stopped_at_exit(processes):
        processes.append(start_service("executor", env))
        async with connected(nats_url) as client, anyio.create_task_group() as tg:

            async def kill_and_restart() -> None:
                while True:
                    await anyio.sleep(KILL_EVERY_SECONDS)  # the fault's pace, not a synchronization
                    index = rng.randrange(len(names))
                    await in_thread(processes[index].kill)
                    report.faults += 1
                    processes[index] = await in_thread(
                        start_service, "scheduler", {**env, "PLAIT_REPLICA": names[index]}
                    )

            tg.start_soon(kill_and_restart)
            while report.executions < MIN_EXECUTIONS or report.faults < MIN_KILLS:  # waves while replicas die
                wave = await launch_many(client, 10, seed=report.executions)
                report.executions += len(wave)
                await wait_all(client, wave, timeout=30, report=report)
            tg.cancel_scope.cancel()
        async with connected(nats_url) as client:
            report.problems = await audit_log(client)
    report.check()
