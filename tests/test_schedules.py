"""Launch plan schedules against real servers: fires launch once each across replicas, deactivation stops them, and
a fire missed while no scheduler ran is launched once (or skipped) when they come back."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import msgspec
import nats.js.errors
import pytest
import structlog.testing
from nats.aio.msg import Msg

from plait import CronSchedule, FixedRate, InputError, LaunchPlan
from plait.adapters.activations import activation_state, append_activation, fire_decoder, pending_fire_message
from plait.adapters.quarantine import count_entries
from plait.client import AsyncClient
from plait.core.activations import FireLaunchPlan, LaunchPlanActivated, fire_command
from plait.core.schedules import OnMissed, fire_execution_id, kickoff_time
from plait.protocol import subjects
from plait.protocol.headers import PLAIT_ERROR
from plait_executor import ExecutorService
from plait_scheduler import SchedulerService
from plait_scheduler.schedules import SCHEDULES_READER
from tests import schedule_workflows, workflows
from tests.helpers.plait_command import plait_command_async
from tests.helpers.queues import waiting
from tests.helpers.restartable_nats import RestartableNats
from tests.helpers.running import Running, running
from tests.helpers.stack import services_and_client
from tests.helpers.states import final_state

PERIOD = 2  # seconds: the server fires schedules on whole seconds
HOURLY_IN_PARIS = CronSchedule("0 * * * *", timezone="Europe/Paris")


class Launches:
    """The executions of a plan as their first decisions are appended (a core NATS subscription to the log)."""

    def __init__(self, prefix: str, earlier: frozenset[str] = frozenset()) -> None:
        self.prefix, self.earlier = prefix, earlier  # ``earlier``: launched before, whose later decisions show here
        self.ids: list[str] = []
        self._arrived = asyncio.Condition()

    async def seen(self, msg: Msg) -> None:
        execution_id = msg.subject.rsplit(".", 1)[-1].replace(":", ".")
        if execution_id.startswith(self.prefix) and execution_id not in self.ids and execution_id not in self.earlier:
            async with self._arrived:
                self.ids.append(execution_id)
                self._arrived.notify_all()

    async def at_least(self, count: int, timeout: float = 60) -> list[str]:
        with anyio.fail_after(timeout):
            async with self._arrived:
                await self._arrived.wait_for(lambda: len(self.ids) >= count)
        return list(self.ids)


@contextlib.asynccontextmanager
async def watching(
    client: AsyncClient, plan: LaunchPlan, earlier: frozenset[str] = frozenset()
) -> AsyncIterator[Launches]:
    launches = Launches(f"{plan.name}-{plan.spec.version[:12]}-", earlier)
    subscription = await client.nc.subscribe(f"{subjects.EVENTS_ROOT}.default.development.>", cb=launches.seen)
    try:
        yield launches
    finally:
        await subscription.unsubscribe()


async def pending_fire(client: AsyncClient, plan: LaunchPlan) -> datetime | None:
    """The fire time of the fire the server has sent and no scheduler has taken yet, if any."""
    subject = subjects.fire_subject("default", "development", plan.name)
    await waiting(client.js, subjects.COMMANDS_STREAM)  # fires taken are trimmed: the one left, if any, is not taken
    try:
        raw = await client.js.get_msg(subjects.COMMANDS_STREAM, subject=subject)
    except nats.js.errors.NotFoundError:
        return None
    return fire_decoder.decode(raw.data or b"").fire_at


async def next_fire_sent(client: AsyncClient, plan: LaunchPlan) -> datetime:
    """The time of the fire the server sends next (or has sent, and no scheduler took). The server stores a fire
    without publishing it to subscribers, and the scheduler's consumer of fires takes no second reader: the stream
    is asked every 0.1 s."""
    with anyio.fail_after(30):
        while (sent := await pending_fire(client, plan)) is None:  # noqa: ASYNC110
            await anyio.sleep(0.1)
    return sent


async def nothing_scheduled(client: AsyncClient, plan: LaunchPlan) -> bool:
    subject = subjects.launch_plan_schedule_subject("default", "development", plan.name)
    info = await client.js.stream_info(subjects.COMMANDS_STREAM, subjects_filter=subject)
    return not info.state.subjects and await pending_fire(client, plan) is None


async def stopped_firing(client: AsyncClient, plan: LaunchPlan, launches: Launches) -> None:
    """Deactivate the plan and check it launches nothing more: a fire set meanwhile lands within a period."""
    assert not (await client.deactivate_launch_plan(plan.name)).active
    await anyio.sleep(PERIOD + 1)
    launched = list(launches.ids)
    await anyio.sleep(2 * PERIOD)  # time in which an active plan would have fired twice
    assert launches.ids == launched
    assert await nothing_scheduled(client, plan)


@pytest.fixture
async def client(nats_url: str) -> AsyncIterator[AsyncClient]:
    async with await AsyncClient.connect(nats_url) as plait_client:
        yield plait_client


async def test_a_fixed_rate_fires_each_time_once_across_two_replicas(nats_url: str, client: AsyncClient) -> None:
    plan = LaunchPlan(
        schedule_workflows.stamped, "every-two-seconds", schedule=FixedRate(seconds=PERIOD, kickoff_time_input="run_at")
    )
    replicas = [SchedulerService(nats_url, replica=f"scheduler-{n}") for n in range(2)]
    executor = ExecutorService(nats_url, concurrency=2, replica="executor")
    async with running(*(r.run for r in replicas), executor.run), watching(client, plan) as launches:
        await client.register(plan)
        activated = await client.activate_launch_plan(plan.name)
        assert activated.active and activated.version == plan.spec.version and len(activated.next_fires) == 5
        ids = await launches.at_least(4)
        await stopped_firing(client, plan, launches)
        launched = list(launches.ids)
    assert activated.since is not None
    grid = [activated.since.replace(microsecond=0) + timedelta(seconds=PERIOD * k) for k in range(1, 1000)]
    fire_times = {fire_execution_id(plan.name, plan.spec.version, t): t for t in grid}
    assert set(launched) <= set(fire_times), "every execution is a fire on the plan's grid"
    assert len(ids) >= 4
    assert sum(r.schedules.launched for r in replicas if r.schedules) == len(launched), "no fire launched twice"
    for execution_id in launched:
        state = await final_state(client, execution_id, timeout=60)
        assert state.outputs == {"result": kickoff_time(fire_times[execution_id])}


@pytest.mark.parametrize("on_missed", ["run", "skip"])
async def test_a_fire_missed_while_no_scheduler_ran(nats_url: str, client: AsyncClient, on_missed: OnMissed) -> None:
    plan = LaunchPlan(
        schedule_workflows.stamped,
        f"missed-{on_missed}",
        schedule=FixedRate(seconds=PERIOD, on_missed=on_missed, kickoff_time_input="run_at"),
    )
    executor = ExecutorService(nats_url, concurrency=2, replica="executor")
    async with running(executor.run), watching(client, plan) as launches:
        scheduler = await Running(SchedulerService(nats_url, replica="scheduler").run).start()
        await client.register(plan)
        await client.activate_launch_plan(plan.name)
        await launches.at_least(1)
        await scheduler.stop()
        missed = await next_fire_sent(client, plan)
        before = list(launches.ids)
        await _sleep_until(missed + timedelta(seconds=2 * PERIOD))  # its successor, and the next, were due
        restarted = SchedulerService(nats_url, replica="scheduler")
        async with running(restarted.run):
            after = await launches.at_least(len(before) + (2 if on_missed == "run" else 1))
            await stopped_firing(client, plan, launches)
    missed_id = fire_execution_id(plan.name, plan.spec.version, missed)
    successor = fire_execution_id(plan.name, plan.spec.version, missed + timedelta(seconds=PERIOD))
    assert successor not in launches.ids, "a fire due while no scheduler ran is not launched for each period"
    assert restarted.schedules is not None
    if on_missed == "run":
        assert after[len(before)] == missed_id, "the missed fire is launched first, once"
        assert (await final_state(client, missed_id, timeout=60)).outputs == {"result": kickoff_time(missed)}
    else:
        assert missed_id not in launches.ids and restarted.schedules.skipped == 1
    assert restarted.schedules.launched == len(launches.ids) - len(before)


async def _sleep_until(at: datetime) -> None:
    await anyio.sleep(max(0.0, (at - datetime.now(UTC)).total_seconds()))


async def test_only_a_registered_plan_with_a_schedule_is_activated(nats_url: str, client: AsyncClient) -> None:
    unscheduled = LaunchPlan(workflows.add_two, "unscheduled", default_inputs={"a": 1, "b": 2})
    await client.register(unscheduled)
    with pytest.raises(InputError, match=r"launch plan 'unscheduled@\w+' has no schedule to activate"):
        await client.activate_launch_plan("unscheduled")
    state = await client.launch_plan_schedule("unscheduled")
    assert not state.active and state.next_fires == ()


async def test_the_cli_activates_shows_and_deactivates_a_schedule(nats_url: str, database_url: str) -> None:
    plan = LaunchPlan(workflows.add_two, "hourly-in-paris", default_inputs={"a": 1, "b": 2}, schedule=HOURLY_IN_PARIS)
    env = {"PLAIT_NATS_URL": nats_url}
    async with services_and_client(nats_url, database_url) as client:
        await client.register(plan)
        activated = await plait_command_async(["launch-plans", "activate", plan.name], env)
        assert activated.returncode == 0, activated.stderr
        assert f"schedule: active, version {plan.spec.version}" in activated.stdout
        assert activated.stdout.count("next: ") == 5 and ":00:00 UTC" in activated.stdout
        assert activated.stdout.count(":00:00 Europe/Paris)") == 5  # each fire also in the schedule's zone
        shown = await plait_command_async(["launch-plans", "show", plan.name], env)
        assert shown.returncode == 0, shown.stderr
        assert "schedule: active" in shown.stdout and '"expression": "0 * * * *"' in shown.stdout
        deactivated = await plait_command_async(["launch-plans", "deactivate", plan.name, "--json"], env)
        assert deactivated.returncode == 0, deactivated.stderr
        assert msgspec.json.decode(deactivated.stdout)["active"] is False
        assert not (await client.launch_plan_schedule(plan.name)).active


async def test_records_and_fires_the_schedulers_cannot_use_do_not_stop_them(nats_url: str, client: AsyncClient) -> None:
    ghost = LaunchPlanActivated(
        project="default", domain="development", launch_plan="ghost", version="0" * 32, at=datetime.now(UTC)
    )
    await append_activation(client.js, ghost, 0)  # a plan never registered
    await client.js.publish(
        subjects.activation_subject("default", "development", "junk"), b"{not json", stream=subjects.EVENTS_STREAM
    )
    plan = LaunchPlan(
        schedule_workflows.stamped, "after-junk", schedule=FixedRate(seconds=PERIOD, kickoff_time_input="run_at")
    )
    scheduler = SchedulerService(nats_url, replica="scheduler")
    executor = ExecutorService(nats_url, concurrency=2, replica="executor")
    misdirected = FireLaunchPlan(
        command_id="x",
        project="default",
        domain="development",
        launch_plan=plan.name,
        version="v",
        fire_at=ghost.at,
        activation=1,
    )
    hostile = {"junk-fire": b"junk", "another-plan": msgspec.json.encode(misdirected)}
    for name, data in hostile.items():
        await client.js.publish(subjects.fire_subject("default", "development", name), data)
    async with running(scheduler.run, executor.run), watching(client, plan) as launches:
        await client.register(plan)
        await client.activate_launch_plan(plan.name)
        await launches.at_least(1)
        await stopped_firing(client, plan, launches)
    assert await count_entries(client.js, SCHEDULES_READER) == 1
    for name in hostile:
        letter = await client.js.get_msg(
            subjects.DEAD_LETTER_STREAM,
            subject=subjects.dead_letter_subject(subjects.fire_subject("default", "development", name)),
        )
        assert (letter.headers or {}).get(PLAIT_ERROR)


async def test_a_fire_due_while_nats_itself_was_down_is_launched_once_when_it_is_back(tmp_path: Path) -> None:
    """The whole system down: the server keeps the pending fire on disk and sends it once it is back."""
    server = RestartableNats(tmp_path / "nats")
    await anyio.to_thread.run_sync(server.start)
    plan = LaunchPlan(
        schedule_workflows.stamped, "through-an-outage", schedule=FixedRate(seconds=PERIOD, kickoff_time_input="run_at")
    )
    grid_of: dict[str, datetime] = {}
    try:
        async with await AsyncClient.connect(server.url) as client:
            async with running(SchedulerService(server.url, replica="scheduler").run), watching(client, plan) as first:
                await client.register(plan)
                activated = await client.activate_launch_plan(plan.name)
                await first.at_least(1)
            before = frozenset(i for i in await client.execution_ids() if i.startswith(first.prefix))  # all there are
        await anyio.to_thread.run_sync(server.kill)
        await anyio.sleep(2 * PERIOD + 1)  # fire times pass while nothing runs
        back = datetime.now(UTC)
        await anyio.to_thread.run_sync(server.start)
        executor = ExecutorService(server.url, concurrency=2, replica="executor")
        async with running(SchedulerService(server.url, replica="scheduler").run, executor.run):
            async with await AsyncClient.connect(server.url) as client:
                async with watching(client, plan, before) as launches:
                    after = await launches.at_least(2)
                    await stopped_firing(client, plan, launches)
                    assert activated.since is not None
                    anchor = activated.since.replace(microsecond=0)
                    for k in range(1, 1000):
                        fire_at = anchor + timedelta(seconds=PERIOD * k)
                        grid_of[fire_execution_id(plan.name, plan.spec.version, fire_at)] = fire_at
                    recovered = [execution_id for execution_id in launches.ids if grid_of[execution_id] < back]
                    assert len(recovered) == 1 and recovered[0] == after[0], "one launch for the whole outage"
                    state = await final_state(client, recovered[0], timeout=60)
                    assert state.outputs == {"result": kickoff_time(grid_of[recovered[0]])}
    finally:
        await anyio.to_thread.run_sync(server.kill)


async def test_a_fire_handled_again_leaves_the_later_pending_fire_as_it_is(nats_url: str, client: AsyncClient) -> None:
    """A nats-server that crashed sends again, as new, the fires whose acknowledgements it had not written yet: one
    handled again must not set the next fire anew (before, it replaced the pending one)."""
    plan = LaunchPlan(
        schedule_workflows.stamped, "handled-again", schedule=FixedRate(seconds=3600, kickoff_time_input="run_at")
    )
    scheduler = SchedulerService(nats_url, replica="scheduler")
    with structlog.testing.capture_logs() as logs:
        async with running(scheduler.run):
            await client.register(plan)
            await client.activate_launch_plan(plan.name)
            with anyio.fail_after(30):
                while (pending := await pending_fire_of(client, plan)) is None:  # noqa: ASYNC110
                    await anyio.sleep(0.05)
            record, activation = await activation_state(client.js, "default", "development", plan.name)
            assert isinstance(record, LaunchPlanActivated)
            stale = fire_command(record, activation, pending[0].fire_at - timedelta(hours=1))
            await client.js.publish(
                subjects.fire_subject("default", "development", plan.name),
                msgspec.json.encode(stale),
                headers={"Nats-Msg-Id": "sent-again-as-new"},
                stream=subjects.COMMANDS_STREAM,
            )
            with anyio.fail_after(30):
                while not any(e["event"] == "launch_plan_fired" and e.get("launch_plan") == plan.name for e in logs):  # noqa: ASYNC110
                    await anyio.sleep(0.05)
            assert await pending_fire_of(client, plan) == pending


async def pending_fire_of(client: AsyncClient, plan: LaunchPlan) -> tuple[FireLaunchPlan, int] | None:
    """The plan's fire set and not sent yet, with its sequence in the timers stream."""
    raw = await pending_fire_message(client.js, "default", "development", plan.name)
    return None if raw is None else (fire_decoder.decode(raw.data or b""), raw.seq or 0)
