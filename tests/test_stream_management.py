"""Only the operator's credential manages streams (deploy/nats/tenants.conf): ``plait streams ensure`` makes them, a
service with a confined credential waits, not ready, until they are there, then runs executions on them. Against a
real nats-server with the shipped configuration."""

from __future__ import annotations

import dataclasses
import io
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import nats.errors
import nats.js.errors
import pytest
import structlog.testing
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StreamInfo

from plait.adapters.activations import cancel_fire, schedule_fire
from plait.adapters.commands_upgrade import DISPATCH_HOLDING_STREAM, HOLDING_STREAM
from plait.adapters.connection import connect
from plait.adapters.object_store import JetStreamObjects
from plait.adapters.partitions import PartitionsMismatch, partitions_of_stream
from plait.adapters.streams import StreamsMissing, ensure_streams, stream_configs, stream_problems
from plait.client import AsyncClient
from plait.core.activations import FireLaunchPlan
from plait.protocol import subjects
from plait.protocol.signing import PLAIT_KEY, PLAIT_SIG
from plait_catalog import CatalogService
from plait_executor import ExecutorService
from plait_scheduler import SchedulerService
from plait_scheduler.service import COMMANDS_CONSUMER
from tests import workflows
from tests.helpers.plait_command import plait_command_async
from tests.helpers.running import running
from tests.helpers.secured_nats import DEADLINE, SecuredNats, secured_nats, watched

ALPHA, DOMAIN = "alpha", "development"
STREAMS = {config.name for config in stream_configs()}
BUCKET_STREAMS = {"OBJ_PLAIT_VALUES", "OBJ_PLAIT_LOGS", "OBJ_PLAIT_CODE", "KV_PLAIT_SERVICES", "KV_PLAIT_EXECUTORS"}


@pytest.fixture
async def secured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[SecuredNats]:
    with secured_nats(tmp_path, monkeypatch) as server:
        yield server


@pytest.fixture
async def operator(secured: SecuredNats) -> AsyncIterator[NATS]:
    """The operator's connection; it makes no stream by itself."""
    nc = await connect(secured.url, "test-operator", auth=secured.auth("plait-operator"))
    try:
        yield nc
    finally:
        await nc.close()


def as_user(secured: SecuredNats, user: str) -> dict[str, str]:
    auth = secured.auth(user)
    return {"PLAIT_NATS_URL": secured.url, "PLAIT_NATS_USER": auth.user, "PLAIT_NATS_PASSWORD_FILE": auth.password_file}


async def refused_to(secured: SecuredNats, user: str, inbox: str, forbidden: list[str]) -> None:
    """Each of ``forbidden`` published as ``user`` is refused by the server."""
    watch = await watched(secured, user, inbox)
    try:
        for subject in forbidden:
            await watch.nc.publish(subject, b"{}")
            assert "publish" in (await watch.refused(subject)).lower(), (user, subject)
    finally:
        await watch.nc.close()


async def stream_names(nc: NATS) -> set[str]:
    return {info.config.name or "" for info in await nc.jetstream().streams_info()}


async def test_plait_streams_ensure_makes_every_stream_and_bucket_once(secured: SecuredNats, operator: NATS) -> None:
    made = await plait_command_async(["streams", "ensure", "--json"], as_user(secured, "plait-operator"))
    assert made.returncode == 0, made.stderr
    actions = {one["name"]: one["action"] for one in json.loads(made.stdout)["streams"]}
    assert actions == dict.fromkeys(STREAMS | BUCKET_STREAMS, "created")
    assert await stream_names(operator) == STREAMS | BUCKET_STREAMS

    again = await plait_command_async(["streams", "ensure"], as_user(secured, "plait-operator"))
    assert again.returncode == 0, again.stderr
    assert f"{len(actions)} streams and buckets, 0 created or updated" in again.stdout

    await operator.jetstream().delete_stream(subjects.NOTIFICATIONS_STREAM)
    refused = await plait_command_async(["streams", "ensure"], as_user(secured, "plait-services"))
    assert refused.returncode != 0
    assert f"stream {subjects.NOTIFICATIONS_STREAM}: NATS refused it" in refused.stderr
    assert "PLAIT_NATS_USER=plait-operator" in refused.stderr


async def test_no_credential_but_the_operators_creates_updates_purges_or_deletes_a_stream(
    secured: SecuredNats, operator: NATS
) -> None:
    await ensure_streams(operator.jetstream())
    forbidden = [
        "$JS.API.STREAM.CREATE.ELSEWHERE",
        f"$JS.API.STREAM.UPDATE.{subjects.EVENTS_STREAM}",
        f"$JS.API.STREAM.DELETE.{subjects.NOTIFICATIONS_STREAM}",
        f"$JS.API.STREAM.PURGE.{subjects.EVENTS_STREAM}",
        f"$JS.API.STREAM.PURGE.{subjects.TIMERS_STREAM}",
        f"$JS.API.STREAM.PURGE.OBJ_{subjects.VALUES_BUCKET}",
        f"$JS.API.STREAM.PURGE.OBJ_{subjects.LOGS_BUCKET}",
        f"$JS.API.STREAM.MSG.DELETE.{subjects.DEAD_LETTER_STREAM}",
        f"$JS.API.STREAM.MSG.DELETE.OBJ_{subjects.VALUES_BUCKET}",
        f"$JS.API.STREAM.RESTORE.{subjects.EVENTS_STREAM}",
        "$JS.API.ACCOUNT.PURGE.$G",
    ]
    users = {
        "plait-services": "_INBOX",
        "plait-auditor": "_INBOX",
        "alpha-development": f"_INBOX.{ALPHA}.{DOMAIN}",
    }
    for user, inbox in users.items():
        await refused_to(secured, user, inbox, forbidden)

    services = await connect(secured.url, "test-services", auth=secured.auth("plait-services"))
    # a rollup purges through a publish, where no permission reaches: the log, checkpoints, commands and buckets
    # take none
    try:
        for subject, stream in (
            (subjects.execution_subject(ALPHA, DOMAIN, "e1"), subjects.EVENTS_STREAM),
            (subjects.command_subject(ALPHA, DOMAIN, "e1", "launch"), subjects.COMMANDS_STREAM),
            (subjects.checkpoint_subject(ALPHA, DOMAIN, "e1"), subjects.CHECKPOINTS_STREAM),
            *((f"$O.{bucket}.C.x", f"OBJ_{bucket}") for bucket in (subjects.VALUES_BUCKET, subjects.LOGS_BUCKET)),
            (f"$O.{subjects.CODE_BUCKET}.M.x", f"OBJ_{subjects.CODE_BUCKET}"),
        ):
            with pytest.raises(nats.js.errors.APIError, match="rollup not permitted"):
                await services.jetstream().publish(subject, b"{}", headers={"Nats-Rollup": "all"}, stream=stream)
    finally:
        await services.close()

    js = operator.jetstream()
    await js.publish(subjects.command_subject(ALPHA, DOMAIN, "e1", "launch"), b"{}", stream=subjects.COMMANDS_STREAM)
    assert (await js.purge_stream(subjects.COMMANDS_STREAM)) is True
    assert await js.delete_stream(subjects.NOTIFICATIONS_STREAM)
    assert subjects.NOTIFICATIONS_STREAM not in await stream_names(operator)


async def test_only_the_services_and_the_operator_purge_the_commands_and_dispatch_streams(
    secured: SecuredNats, operator: NATS
) -> None:
    """The schedulers purge what the consumers of these two streams acknowledged (plait.adapters.acked_trim)."""
    await ensure_streams(operator.jetstream())
    purges = [f"$JS.API.STREAM.PURGE.{stream}" for stream in (subjects.COMMANDS_STREAM, subjects.DISPATCH_STREAM)]
    await refused_to(secured, "plait-auditor", "_INBOX", purges)
    await refused_to(secured, "alpha-development", f"_INBOX.{ALPHA}.{DOMAIN}", purges)
    services = await connect(secured.url, "test-services", auth=secured.auth("plait-services"))
    try:
        js = services.jetstream()
        for stream, subject in (
            (subjects.COMMANDS_STREAM, subjects.command_subject(ALPHA, DOMAIN, "e1", "launch")),
            (subjects.DISPATCH_STREAM, subjects.dispatch_subject("local", "default")),
        ):
            await js.publish(subject, b"{}", stream=stream)
            assert await js.purge_stream(stream, subject=subject) is True
            assert (await js.stream_info(stream)).state.messages == 0
    finally:
        await services.close()


def test_the_services_may_purge_no_stream_of_plaits_but_the_commands_and_dispatch() -> None:
    """Their deny list names each stream: a stream added to plait must be added there too."""
    conf = Path(__file__).parents[1] / "deploy" / "nats" / "tenants.conf"
    listed = conf.read_text().split("SERVICES_STREAM_MANAGEMENT = [", 1)[1].split("]", 1)[0]
    denied = set(re.findall(r'"\$JS\.API\.STREAM\.PURGE\.([A-Z_]+)"', listed))
    holding = {HOLDING_STREAM, DISPATCH_HOLDING_STREAM}
    assert denied == (STREAMS | BUCKET_STREAMS | holding) - {subjects.COMMANDS_STREAM, subjects.DISPATCH_STREAM}
    assert "$JS.API.STREAM.PURGE.>" not in listed


async def test_the_services_cancel_a_launch_plans_pending_fire_without_purging(
    secured: SecuredNats, operator: NATS
) -> None:
    await ensure_streams(operator.jetstream())
    services = await connect(secured.url, "test-services", auth=secured.auth("plait-services"))
    try:
        js = services.jetstream()
        now = datetime.now(UTC)
        fire = FireLaunchPlan(
            command_id="fire-1",
            project=ALPHA,
            domain=DOMAIN,
            launch_plan="nightly",
            version="v1",
            activation=1,
            fire_at=now + timedelta(hours=1),
        )
        await schedule_fire(js, fire, now)
        schedule = subjects.launch_plan_schedule_subject(ALPHA, DOMAIN, "nightly")
        assert (await js.get_msg(subjects.TIMERS_STREAM, subject=schedule)).data
        await cancel_fire(js, ALPHA, DOMAIN, "nightly")
        with pytest.raises(nats.js.errors.NotFoundError):
            await js.get_msg(subjects.TIMERS_STREAM, subject=schedule)
        await cancel_fire(js, ALPHA, DOMAIN, "nightly")  # none pending: nothing to do
    finally:
        await services.close()


async def test_services_wait_not_ready_for_the_operators_streams_then_run_an_execution(
    secured: SecuredNats, operator: NATS, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = secured.auth("plait-services")
    monkeypatch.setenv("PLAIT_NATS_USER", services.user)
    monkeypatch.setenv("PLAIT_NATS_PASSWORD_FILE", services.password_file)
    scheduler = SchedulerService(secured.url, replica="confined-scheduler")
    started = anyio.Event()

    async def start_scheduler(tg: anyio.abc.TaskGroup) -> None:
        await tg.start(scheduler.run)
        started.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(start_scheduler, tg)
        with anyio.fail_after(DEADLINE):
            problem = await scheduler.health.problem_reported("streams")
        assert f"stream {subjects.EVENTS_STREAM} is missing" in problem
        assert "run `plait streams ensure` with the operator's NATS credentials" in problem
        assert any(p.startswith("streams: ") for p in scheduler.health.readiness_problems())
        assert await stream_names(operator) == set(), "the service made no stream"
        with pytest.raises(StreamsMissing, match="plait streams ensure"):
            await AsyncClient.connect(secured.url, ALPHA, DOMAIN, auth=secured.auth("alpha-development"))

        made = await plait_command_async(["streams", "ensure"], as_user(secured, "plait-operator"))
        assert made.returncode == 0, made.stderr
        with anyio.fail_after(DEADLINE):
            await started.wait()
        assert scheduler.health.readiness_problems() == []

        executor = ExecutorService(secured.url, concurrency=1, replica="confined-executor")
        catalog = CatalogService(secured.url, database_url, replica="confined-catalog")
        async with (
            running(executor.run, catalog.run),
            await AsyncClient.connect(secured.url, ALPHA, DOMAIN, auth=secured.auth("alpha-development")) as client,
        ):
            handle = await client.launch(workflows.add_two, {"a": 1, "b": 2})
            with anyio.fail_after(DEADLINE * 3):
                assert await handle.result() == 3
        tg.cancel_scope.cancel()


async def test_a_value_stored_twice_at_once_is_kept_though_the_services_may_not_purge(
    secured: SecuredNats, operator: NATS
) -> None:
    """Two writers of the same content: the second put replaces the first, and its purge of the first copy's chunks
    is refused (no answer); the value is stored all the same."""
    await ensure_streams(operator.jetstream())
    services = await connect(secured.url, "test-services", auth=secured.auth("plait-services"))
    try:
        objects = JetStreamObjects(services.jetstream())
        content = b"the same content, stored by two writers"
        await objects.put("by-hash", io.BytesIO(content))
        await objects.put("by-hash", io.BytesIO(content))  # as a writer that looked before the first stored it
        read = io.BytesIO()
        assert await objects.get("by-hash", read)
        assert read.getvalue() == content
    finally:
        await services.close()


async def test_a_commands_stream_of_an_earlier_release_is_made_anew_keeping_its_commands_and_timers(
    nats_url: str,
) -> None:
    """An earlier release kept the timers in the commands stream, which therefore allowed schedules (and rollups) for
    good: ensuring the streams makes it anew without them, sourcing the timers stream, and keeps what it held."""
    nc = await connect(nats_url, "test-upgrade")
    try:
        js = nc.jetstream()
        earlier = next(c for c in stream_configs() if c.name == subjects.COMMANDS_STREAM)
        with_timers = [*(earlier.subjects or []), f"{subjects.SCHEDULES_ROOT}.>"]
        await js.add_stream(dataclasses.replace(earlier, subjects=with_timers, allow_msg_schedules=True, sources=None))
        launch = subjects.command_subject(ALPHA, DOMAIN, "e1", "launch")
        msg_id = {"Nats-Msg-Id": "launch-1"}
        await js.publish(launch, b"pending launch", headers=msg_id, stream=subjects.COMMANDS_STREAM)
        fire_at = (datetime.now(UTC) + timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
        fires = subjects.fire_subject(ALPHA, DOMAIN, "hourly")
        await js.publish(
            subjects.launch_plan_schedule_subject(ALPHA, DOMAIN, "hourly"),
            b"pending fire",
            headers={"Nats-Schedule": f"@at {fire_at}", "Nats-Schedule-Target": fires},
            stream=subjects.COMMANDS_STREAM,
        )

        await ensure_streams(js)
        commands = (await js.stream_info(subjects.COMMANDS_STREAM)).config
        assert not commands.allow_msg_schedules and not commands.allow_rollup_hdrs
        assert [source.name for source in commands.sources or []] == [subjects.TIMERS_STREAM]
        assert await stream_problems(js) == []
        with pytest.raises(nats.js.errors.NotFoundError):
            await js.stream_info(HOLDING_STREAM)

        taken = await js.pull_subscribe("plait.>", durable="upgrade-test", stream=subjects.COMMANDS_STREAM)
        received: list[Msg] = []
        with anyio.fail_after(DEADLINE):
            while len(received) < 2:
                received += await _fetched(taken)
        assert [(m.subject, m.data) for m in received] == [(launch, b"pending launch"), (fires, b"pending fire")]
    finally:
        await nc.close()


@pytest.mark.parametrize("stream", [subjects.COMMANDS_STREAM, subjects.DISPATCH_STREAM])
async def test_a_work_queue_of_an_earlier_release_is_made_anew_keeping_its_messages(nats_url: str, stream: str) -> None:
    """A work queue's every acknowledgement is a synced delete; the server changes no stream's retention: ensuring
    the streams makes it anew, keeping what it held, in order, with its message ids and signatures."""
    nc = await connect(nats_url, "test-upgrade")
    try:
        js = nc.jetstream()
        config = next(c for c in stream_configs() if c.name == stream)
        await js.add_stream(dataclasses.replace(config, retention=RetentionPolicy.WORK_QUEUE))
        if stream == subjects.COMMANDS_STREAM:
            held = [subjects.command_subject(ALPHA, DOMAIN, f"e{i}", "launch") for i in range(3)]
        else:
            held = [subjects.dispatch_subject("local", queue) for queue in ("default", "gpu")]
        signed = [{"Nats-Msg-Id": f"m{index}", PLAIT_KEY: "k1", PLAIT_SIG: f"s{index}"} for index in range(len(held))]
        for index, subject in enumerate(held):
            await js.publish(subject, f"held {index}".encode(), headers=signed[index], stream=stream)
        assert f"stream {stream} is not as this release needs it (retention)" in await stream_problems(js)

        made_anew = "commands_stream_made_anew" if stream == subjects.COMMANDS_STREAM else "dispatch_stream_made_anew"
        with structlog.testing.capture_logs() as logs:
            await ensure_streams(js)
        assert {(e["event"], e.get("stream")) for e in logs} >= {
            ("stream_moving", stream),
            ("stream_moved", stream),
            (made_anew, stream),
        }
        info = await js.stream_info(stream)
        assert info.config.retention == RetentionPolicy.LIMITS
        assert await stream_problems(js) == []
        expected = [(subject, f"held {index}".encode(), signed[index]) for index, subject in enumerate(held)]
        assert await _held_messages(js, info) == expected
        for holding in (HOLDING_STREAM, DISPATCH_HOLDING_STREAM):
            with pytest.raises(nats.js.errors.NotFoundError):
                await js.stream_info(holding)

        with structlog.testing.capture_logs() as logs:
            again = await ensure_streams(js)  # nothing more to move
        assert not [e for e in logs if e["event"] in ("stream_moving", "stream_moved", made_anew)]
        assert {one.name: one.action for one in again}[stream] == "unchanged"
        unchanged = await js.stream_info(stream)
        assert unchanged.created == info.created, "the stream was not made anew again"
        assert await _held_messages(js, unchanged) == expected
    finally:
        await nc.close()


@pytest.mark.parametrize("stream", [subjects.COMMANDS_STREAM, subjects.DISPATCH_STREAM])
async def test_an_empty_work_queue_of_an_earlier_release_is_made_anew(nats_url: str, stream: str) -> None:
    """One that never held a message (its first sequence is 0)."""
    nc = await connect(nats_url, "test-upgrade")
    try:
        js = nc.jetstream()
        config = next(c for c in stream_configs() if c.name == stream)
        await js.add_stream(dataclasses.replace(config, retention=RetentionPolicy.WORK_QUEUE))

        await ensure_streams(js)
        info = await js.stream_info(stream)
        assert info.config.retention == RetentionPolicy.LIMITS
        assert info.state.messages == 0
        assert await stream_problems(js) == []
        for holding in (HOLDING_STREAM, DISPATCH_HOLDING_STREAM):
            with pytest.raises(nats.js.errors.NotFoundError):
                await js.stream_info(holding)
    finally:
        await nc.close()


async def _held_messages(js: JetStreamContext, info: StreamInfo) -> list[tuple[str, bytes, dict[str, str]]]:
    """Each message of the stream, in order: its subject, data and headers."""
    name = info.config.name or ""
    kept = [await js.get_msg(name, seq=seq) for seq in range(info.state.first_seq, info.state.last_seq + 1)]
    return [(m.subject or "", m.data or b"", dict(m.headers or {})) for m in kept]


async def _fetched(subscription: JetStreamContext.PullSubscription) -> list[Msg]:
    try:
        return await subscription.fetch(1, timeout=1)
    except nats.errors.TimeoutError:
        return []


async def test_the_operator_partitions_the_commands_stream_for_confined_schedulers(
    secured: SecuredNats, operator: NATS, monkeypatch: pytest.MonkeyPatch
) -> None:
    await ensure_streams(operator.jetstream())
    services = secured.auth("plait-services")
    monkeypatch.setenv("PLAIT_NATS_USER", services.user)
    monkeypatch.setenv("PLAIT_NATS_PASSWORD_FILE", services.password_file)
    unpartitioned = ConsumerConfig(
        durable_name=COMMANDS_CONSUMER, filter_subject=f"{subjects.COMMANDS_ROOT}.>", ack_policy=AckPolicy.EXPLICIT
    )
    await operator.jetstream().add_consumer(subjects.COMMANDS_STREAM, unpartitioned)  # as a running replica has it
    with pytest.raises(PartitionsMismatch, match="plait streams ensure --partitions 2"):
        with anyio.fail_after(DEADLINE):
            await SchedulerService(secured.url, replica="confined-partitioned", partitions=2).run()
    consumer = await operator.jetstream().consumer_info(subjects.COMMANDS_STREAM, COMMANDS_CONSUMER)
    assert consumer.config.filter_subject == f"{subjects.COMMANDS_ROOT}.>", "refused before changing any consumer"

    split = await plait_command_async(
        ["streams", "ensure", "--partitions", "2", "--json"], as_user(secured, "plait-operator")
    )
    assert split.returncode == 0, split.stderr
    actions = {one["name"]: one["action"] for one in json.loads(split.stdout)["streams"]}
    assert actions[subjects.COMMANDS_STREAM] == "split in 2 partitions"
    assert await partitions_of_stream(operator.jetstream()) == 2
    other = await plait_command_async(["streams", "ensure", "--partitions", "3"], as_user(secured, "plait-operator"))
    assert other.returncode != 0
    assert "split in 2 partitions" in other.stderr


@pytest.mark.parametrize("stream", [subjects.COMMANDS_STREAM, subjects.DISPATCH_STREAM])
async def test_ensuring_the_streams_asks_again_while_the_cluster_settles_even_for_an_earlier_layout(
    nats_url: str, stream: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cluster still electing its leaders leaves a request unanswered: the look for an earlier release's layout,
    the first question about that stream, is asked again too (a service starting then would otherwise stop)."""
    nc = await connect(nats_url, "test-settling")
    try:
        js = nc.jetstream()
        real = js.stream_info
        unanswered = [stream]

        async def settling(name: str, *args: object, **kwargs: object) -> StreamInfo:
            if name in unanswered:
                unanswered.remove(name)
                raise nats.errors.TimeoutError
            return await real(name, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(js, "stream_info", settling)
        with structlog.testing.capture_logs() as logs:
            ensured = await ensure_streams(js)
        assert not unanswered, "the question was asked, and went unanswered once"
        assert {e.name for e in ensured} >= STREAMS
        assert {"event": "streams_settling", "stream": stream} in [
            {k: e.get(k) for k in ("event", "stream")} for e in logs
        ]
    finally:
        await nc.close()


@pytest.mark.parametrize(("err_code", "settles"), [(10005, True), (10058, False)])
async def test_a_stream_placed_while_a_peer_is_offline_is_placed_again_other_refusals_are_raised(
    nats_url: str, err_code: int, settles: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ "No suitable peers for placement" (a server of the cluster restarting, or not yet known to the meta leader)
    passes once the peer is back; another refusal, such as a name in use with another configuration, does not."""
    nc = await connect(nats_url, "test-placement")
    try:
        js = nc.jetstream()
        real = js.stream_info
        refused = [subjects.EVENTS_STREAM]

        async def placing(name: str, *args: object, **kwargs: object) -> StreamInfo:
            if name in refused:
                refused.remove(name)
                raise nats.js.errors.BadRequestError(code=400, err_code=err_code, description="refused once")
            return await real(name, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(js, "stream_info", placing)
        if settles:
            assert {e.name for e in await ensure_streams(js)} >= STREAMS
        else:
            with pytest.raises(nats.js.errors.BadRequestError, match="refused once"):
                await ensure_streams(js)
        assert not refused
    finally:
        await nc.close()
