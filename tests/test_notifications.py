"""Notifications of ended executions against real servers and a real HTTP server on loopback: published on
``plait.notify.…`` for the phases asked, posted to webhooks with bounded retries, failures counted and never in the
execution's way."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import threading
from collections.abc import AsyncIterator

import anyio
import msgspec
import nats.js.errors
import pytest
from nats.aio.msg import Msg

from plait import LaunchPlan, Notify
from plait.adapters.event_store import EventStore
from plait.adapters.registry import Registry
from plait.client import AsyncClient
from plait.core.notifications import ExecutionNotification
from plait.protocol import subjects
from plait_executor import ExecutorService
from plait_scheduler import SchedulerService
from plait_scheduler.cache import StateCache
from plait_scheduler.notifications import Notifier
from tests import schedule_workflows, workflows
from tests.helpers.running import running
from tests.helpers.states import final_state

FAILURES_BEFORE_SUCCESS = {"/flaky": 2, "/down": 1_000_000, "/ok": 0}


class Webhooks:
    """A loopback HTTP server that records every POST (path, body, status answered) as it arrives."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.posts: asyncio.Queue[tuple[str, bytes, int]] = asyncio.Queue()
        self.failed: dict[str, int] = {}
        hooks = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                failed = hooks.failed.get(self.path, 0)
                status = 500 if failed < FAILURES_BEFORE_SUCCESS[self.path] else 200
                hooks.failed[self.path] = failed + (status == 500)
                self.send_response(status)
                self.end_headers()
                loop.call_soon_threadsafe(hooks.posts.put_nowait, (self.path, body, status))

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    async def next_posts(self, count: int) -> list[tuple[str, bytes, int]]:
        with anyio.fail_after(30):
            return [await self.posts.get() for _ in range(count)]


@pytest.fixture
async def webhooks() -> AsyncIterator[Webhooks]:
    hooks = Webhooks(asyncio.get_running_loop())
    thread = threading.Thread(target=hooks.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hooks
    finally:
        await anyio.to_thread.run_sync(hooks.server.shutdown)
        hooks.server.server_close()
        thread.join()


@pytest.fixture
async def stack(nats_url: str) -> AsyncIterator[tuple[AsyncClient, SchedulerService]]:
    scheduler = SchedulerService(nats_url, replica="scheduler")
    executor = ExecutorService(nats_url, concurrency=2, replica="executor")
    async with running(scheduler.run, executor.run), await AsyncClient.connect(nats_url) as client:
        yield client, scheduler


@contextlib.asynccontextmanager
async def notifications(client: AsyncClient) -> AsyncIterator[asyncio.Queue[ExecutionNotification]]:
    received: asyncio.Queue[ExecutionNotification] = asyncio.Queue()

    async def receive(msg: Msg) -> None:
        received.put_nowait(msgspec.json.decode(msg.data, type=ExecutionNotification))

    subscription = await client.nc.subscribe(f"{subjects.NOTIFY_ROOT}.>", cb=receive)
    try:
        yield received
    finally:
        await subscription.unsubscribe()


async def next_notification(received: asyncio.Queue[ExecutionNotification]) -> ExecutionNotification:
    with anyio.fail_after(30):
        return await received.get()


async def test_a_webhook_that_fails_twice_is_posted_a_third_time(
    stack: tuple[AsyncClient, SchedulerService], webhooks: Webhooks
) -> None:
    client, _ = stack
    plan = LaunchPlan(
        schedule_workflows.stamped,
        "notified",
        default_inputs={"run_at": "now"},
        notify=Notify(on=["succeeded"], webhook=webhooks.url("/flaky")),
    )
    async with notifications(client) as received:
        execution = await client.launch(plan)
        notification = await next_notification(received)
    posts = await webhooks.next_posts(3)
    assert [status for _, _, status in posts] == [500, 500, 200]
    assert {body for _, body, _ in posts} == {msgspec.json.encode(notification)}
    assert (notification.execution_id, notification.phase) == (execution.id, "succeeded")
    assert notification.launch_plan == f"notified@{plan.spec.version}"
    assert (await final_state(client, execution.id, timeout=60)).status == "succeeded"


async def test_a_webhook_that_always_fails_is_given_up_and_counted(
    stack: tuple[AsyncClient, SchedulerService], webhooks: Webhooks
) -> None:
    client, scheduler = stack
    plan = LaunchPlan(
        schedule_workflows.refused,
        "refusal-notified",
        default_inputs={"text": "it"},
        notify=Notify(on=["failed"], webhook=webhooks.url("/down")),
    )
    async with notifications(client) as received:
        execution = await client.launch(plan)
        notification = await next_notification(received)
    assert (notification.phase, notification.error) == ("failed", "refuse: refused it")
    assert (await final_state(client, execution.id, timeout=60)).status == "failed"
    assert [status for _, _, status in await webhooks.next_posts(3)] == [500, 500, 500]
    assert scheduler.notifier is not None
    with anyio.fail_after(10):
        while scheduler.notifier.webhook_failures < 1:  # noqa: ASYNC110  (a counter announces nothing)
            await anyio.sleep(0.05)
    assert (scheduler.notifier.webhook_failures, scheduler.notifier.posted) == (1, 0)
    assert webhooks.posts.empty()


async def test_a_workflow_notifies_only_of_the_phases_it_names(stack: tuple[AsyncClient, SchedulerService]) -> None:
    client, scheduler = stack
    async with notifications(client) as received:
        quiet = await client.launch(schedule_workflows.watched, {"text": "fine"})
        assert (await final_state(client, quiet.id, timeout=60)).status == "succeeded"
        loud = await client.launch(schedule_workflows.watched_refusal, {"text": "this"})
        notification = await next_notification(received)
    assert (notification.execution_id, notification.phase) == (loud.id, "failed")
    assert notification.workflow == schedule_workflows.watched_refusal.name
    with pytest.raises(nats.js.errors.NotFoundError):
        await client.js.get_msg(
            subjects.NOTIFICATIONS_STREAM, subject=subjects.notification_subject("default", "development", quiet.id)
        )
    assert scheduler.notifier is not None
    assert scheduler.notifier.launches_read == 0  # it stored both ends: it knew their launches


async def test_a_replica_that_did_not_end_the_execution_reads_its_launch_from_the_log(
    stack: tuple[AsyncClient, SchedulerService],
) -> None:
    client, _ = stack
    loud = await client.launch(schedule_workflows.watched_refusal, {"text": "this"})
    state = await final_state(client, loud.id, timeout=60)
    subject = subjects.execution_subject("default", "development", loud.id)
    decisions = await client.js.pull_subscribe(subject, stream=subjects.EVENTS_STREAM)
    messages = await decisions.fetch(state.decisions, timeout=10)
    other = Notifier(client.js, EventStore(client.js), Registry(client.js), states=StateCache())
    async with notifications(client) as received:
        await other.handle(messages)
        notification = await next_notification(received)
    assert (notification.execution_id, notification.phase, notification.error) == (
        loud.id,
        "failed",
        "refuse: refused this",
    )
    assert (other.launches_read, other.published) == (1, 1)
    await decisions.unsubscribe()


async def test_an_aborted_execution_notifies_with_the_reason(stack: tuple[AsyncClient, SchedulerService]) -> None:
    client, _ = stack
    plan = LaunchPlan(
        workflows.paused, "abort-notified", default_inputs={"seconds": 600.0}, notify=Notify(on=["aborted"])
    )
    async with notifications(client) as received:
        execution = await client.launch(plan)
        await client.abort(execution.id, "not needed today")
        notification = await next_notification(received)
    assert (notification.execution_id, notification.phase, notification.error) == (
        execution.id,
        "aborted",
        "not needed today",
    )
