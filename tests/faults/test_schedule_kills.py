"""A launch plan firing every 2 s while one of two scheduler replicas is killed with SIGKILL every 3 s and
restarted: every fire it launches is on the plan's grid and launched once, the fires go on after the kills, and
every execution ends with a history the invariant checker accepts."""

from __future__ import annotations

import random
from datetime import timedelta

import anyio
import pytest
from nats.aio.msg import Msg

from plait import FixedRate, LaunchPlan
from plait.core.schedules import fire_execution_id
from plait.protocol import subjects
from tests import schedule_workflows
from tests.faults import harness

pytestmark = pytest.mark.faults

PERIOD = 2
MIN_KILLS = 5
KILL_EVERY_SECONDS = 3.0


async def test_killing_scheduler_replicas_while_a_plan_fires(nats_url: str) -> None:
    rng = random.Random(13)
    plan = LaunchPlan(
        schedule_workflows.stamped, "fires-under-kills", schedule=FixedRate(seconds=PERIOD, kickoff_time_input="run_at")
    )
    prefix = f"{plan.name}-{plan.spec.version[:12]}-"
    env = harness.service_env(nats_url)
    names = ["replica-a", "replica-b"]
    processes = [harness.start_service("scheduler", {**env, "PLAIT_REPLICA": name}) for name in names]
    report = harness.FaultReport("scheduler replicas killed (SIGKILL) while a launch plan fires")
    with harness.stopped_at_exit(processes):
        processes.append(harness.start_service("executor", env))
        async with harness.connected(nats_url) as client:
            launched: list[str] = []
            arrived = anyio.Event()

            async def seen(msg: Msg) -> None:
                nonlocal arrived
                execution_id = msg.subject.rsplit(".", 1)[-1].replace(":", ".")
                if execution_id.startswith(prefix) and execution_id not in launched:
                    launched.append(execution_id)
                    arrived.set()
                    arrived = anyio.Event()

            async def launched_more_than(count: int) -> None:
                with anyio.fail_after(60):
                    while len(launched) <= count:
                        await arrived.wait()

            subscription = await client.nc.subscribe(f"{subjects.EVENTS_ROOT}.default.development.>", cb=seen)
            await client.register(plan)
            activated = await client.activate_launch_plan(plan.name)
            while report.faults < MIN_KILLS:
                await anyio.sleep(KILL_EVERY_SECONDS)  # the fault's pace, not a synchronization
                index = rng.randrange(len(names))
                await harness.in_thread(processes[index].kill)
                report.faults += 1
                processes[index] = await harness.in_thread(
                    harness.start_service, "scheduler", {**env, "PLAIT_REPLICA": names[index]}
                )
            await launched_more_than(len(launched))  # the fires go on once the kills stop
            await client.deactivate_launch_plan(plan.name)
            await anyio.sleep(PERIOD + 1)  # a fire set before the deactivation lands within a period
            await subscription.unsubscribe()
            report.executions = len(launched)
            await harness.wait_all(client, launched, timeout=60, report=report)
            report.problems = await harness.audit_log(client)
            dead_letters = await client.js.stream_info(subjects.DEAD_LETTER_STREAM)
    assert activated.since is not None
    anchor = activated.since.replace(microsecond=0)
    fire_times = [anchor + timedelta(seconds=PERIOD * k) for k in range(1000)]
    grid = {fire_execution_id(plan.name, plan.spec.version, fire_at) for fire_at in fire_times}
    assert set(launched) <= grid, "every execution is a fire of the plan's grid"
    assert dead_letters.state.messages == 0, "no fire and no launch was refused"
    assert report.executions >= MIN_KILLS
    report.check()
