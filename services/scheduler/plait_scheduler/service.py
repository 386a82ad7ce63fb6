"""The scheduler replica: consumes commands, appends decisions, and runs the dispatch outbox.

Replicas are stateless: any number may run, all pulling from one durable consumer (or, with partitions, each
partition's consumer pulled by one replica at a time: docs/scaling.md); optimistic concurrency on the execution
subject makes sure only one decision per log position lands.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence

import anyio
import anyio.abc
import msgspec
import nats.errors
import structlog
from anyio.streams.memory import MemoryObjectReceiveStream
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from plait import codec
from plait.adapters.acked_trim import AckedTrimmer
from plait.adapters.commands import KIND_OF_COMMAND
from plait.adapters.connection import connect
from plait.adapters.event_store import EventStore
from plait.adapters.nats_auth import redacted_urls
from plait.adapters.object_store import ValueStore
from plait.adapters.partitions import check_matches, partition_stream, partitions_of_stream, unpartition_consumer
from plait.adapters.pull import Pin, Puller, ensure_consumer
from plait.adapters.quarantine import Quarantine, ReplayResponder
from plait.adapters.registry import Registry
from plait.adapters.services import announce_service
from plait.adapters.stream_readiness import streams_ready
from plait.core.commands import (
    DEFAULT_ATTEMPT_DEADLINE_SECONDS,
    Command,
    LaunchExecution,
    ReportAttemptResult,
    ReportAttemptResults,
    ReportAttemptStarted,
    ResolvedLaunch,
    command_id_of,
)
from plait.core.decide import Outcome
from plait.core.dispatch import DISPATCH_CHUNK_ATTEMPTS, DISPATCH_LEAST_CHUNKS
from plait.core.events import TERMINAL_EVENTS
from plait.errors import InputError
from plait.metrics.health import Health
from plait.metrics.names import COMMANDS
from plait.metrics.queues import QueuePoller
from plait.protocol import subjects
from plait.protocol.headers import NATS_MSG_ID
from plait.protocol.partitions import check_partitions
from plait.protocol.quarantine import OUTBOX_READER
from plait.settings import Settings
from plait.telemetry import span
from plait.telemetry.context import Attributes
from plait_scheduler import quarantined
from plait_scheduler.cache import DEFAULT_CAPACITY_BYTES, StateCache
from plait_scheduler.caching import CacheKeeper
from plait_scheduler.children import report_rejected_launch
from plait_scheduler.deadletter import reject
from plait_scheduler.decisions import Decider
from plait_scheduler.failures import COMMANDS_MAX_DELIVER, MAX_DELIVERIES, PERMANENT, given_up, settle_failed
from plait_scheduler.launches import resolve_launch
from plait_scheduler.notifications import Notifier
from plait_scheduler.outbox import Outbox
from plait_scheduler.partitioned import Partitions
from plait_scheduler.schedules import LaunchPlanSchedules
from plait_scheduler.selections import with_live_executors
from plait_scheduler.tracing import DECIDE_SPAN, decision_parent, with_launch_traceparent

COMMANDS_CONSUMER = "scheduler"
OUTBOX_CONSUMER = "dispatcher"
ACTIVATIONS_CONSUMER = "launch-plan-activations"
FIRES_CONSUMER = "launch-plan-fires"
NOTIFIER_CONSUMER = "notifier"
IN_FLIGHT_PER_CONSUMER = 1024  # messages a replica holds from one consumer: arrived, or being handled
ACK_WAIT_SECONDS = 5.0
"""How long a message a replica took stays with it without word: a killed replica's messages move on after this. A
live replica tells the server it is still at work every third of it (``in progress``), however long it takes."""
RETRY_BATCH_SECONDS = 1.0  # how long a batch whose handling failed waits before it is delivered again
HOLD_STARTED_SECONDS = 0.05
"""How long ``started`` commands alone are held back, so that a quick attempt's result shares their decision
(one append instead of two) rather than waiting behind it."""


class SchedulerService:
    """One scheduler replica. ``run`` serves until cancelled."""

    def __init__(
        self,
        nats_url: str,
        *,
        replica: str,
        cluster: str = "local",
        batch_size: int = 256,
        ack_wait_seconds: float = ACK_WAIT_SECONDS,
        state_cache_bytes: int = DEFAULT_CAPACITY_BYTES,
        stream_replicas: int | None = None,
        cache_reservation_seconds: float = 600.0,
        cache_lookup_seconds: float = 0.5,
        attempt_deadline_seconds: float = DEFAULT_ATTEMPT_DEADLINE_SECONDS,
        default_task_timeout_seconds: float | None = None,
        dispatch_chunk_attempts: int = DISPATCH_CHUNK_ATTEMPTS,
        dispatch_least_chunks: int = DISPATCH_LEAST_CHUNKS,
        partitions: int = 0,
    ) -> None:
        self.partitions = check_partitions(partitions)
        self.pin_seconds = ack_wait_seconds  # a silent replica's partitions move on after this, like its messages
        self.attempt_deadline_seconds = attempt_deadline_seconds
        self.dispatch_chunk_attempts, self.dispatch_least_chunks = dispatch_chunk_attempts, dispatch_least_chunks
        self.default_task_timeout_seconds = default_task_timeout_seconds
        self.cache_reservation_seconds, self.cache_lookup_seconds = cache_reservation_seconds, cache_lookup_seconds
        self.nats_url, self.replica, self.cluster = nats_url, replica, cluster
        self.stream_replicas = stream_replicas
        self.batch_size, self.ack_wait_seconds = batch_size, ack_wait_seconds
        self.log = structlog.get_logger().bind(replica=replica)
        self.states = StateCache(state_cache_bytes)
        self.decider: Decider | None = None
        self.outbox: Outbox | None = None
        self.schedules: LaunchPlanSchedules | None = None
        self.notifier: Notifier | None = None
        self._held: dict[str, tuple[float, list[Msg]]] = {}  # execution subject -> (held since, `started` commands)
        self.health = Health()
        self.owner: Partitions | None = None  # with partitions: which ones this replica holds

    @classmethod
    def from_settings(cls, settings: Settings) -> SchedulerService:
        """A replica as ``settings`` describe it (``PLAIT_NATS_URL``, ``PLAIT_REPLICA``, ``PLAIT_DEFAULT_CLUSTER`` (else
        ``PLAIT_CLUSTER``): the cluster of work that names none...)."""
        return cls(
            settings.required("nats_url"),
            replica=settings.replica_name,
            cluster=settings.default_cluster or settings.cluster,
            ack_wait_seconds=settings.ack_wait_seconds,
            state_cache_bytes=settings.state_cache_bytes,
            stream_replicas=settings.stream_replicas,
            cache_reservation_seconds=settings.cache_reservation_seconds,
            cache_lookup_seconds=settings.cache_lookup_seconds,
            attempt_deadline_seconds=settings.attempt_deadline_seconds,
            default_task_timeout_seconds=settings.default_task_timeout_seconds,
            dispatch_chunk_attempts=settings.dispatch_chunk_attempts,
            dispatch_least_chunks=settings.dispatch_least_chunks,
            partitions=settings.scheduler_partitions,
        )

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        nc = await connect(self.nats_url, f"plait-scheduler-{self.replica}")
        self.health.watch_nats(nc)
        try:
            js = nc.jetstream()
            await streams_ready(js, self.stream_replicas, self.health)
            store = EventStore(js)
            self.decider = Decider(store, self.states, self.replica, ValueStore.on_jetstream(js))
            keeper = CacheKeeper(
                nc, js, reservation_seconds=self.cache_reservation_seconds, lookup_timeout=self.cache_lookup_seconds
            )
            self.outbox = Outbox(
                js,
                store,
                self.states,
                self.cluster,
                keeper,
                self.attempt_deadline_seconds,
                self.dispatch_chunk_attempts,
                self.dispatch_least_chunks,
            )
            registry = Registry(js)
            commands, partitions = await self._subscribe_commands(js)
            decisions = await self._subscribe(js, subjects.EVENTS_STREAM, f"{subjects.EVENTS_ROOT}.>", OUTBOX_CONSUMER)
            self.log.info("scheduler_started", nats=redacted_urls(self.nats_url))
            async with anyio.create_task_group() as tg:
                tg.start_soon(
                    self._consume,
                    nc,
                    subjects.COMMANDS_STREAM,
                    commands,
                    lambda batch: self._handle_commands(nc, js, registry, batch),
                    self._batch_wait,
                    self._held_messages,
                    partitions,
                )
                tg.start_soon(self._consume, nc, subjects.EVENTS_STREAM, decisions, self.outbox.handle)
                tg.start_soon(QueuePoller(js).run)
                tg.start_soon(AckedTrimmer(js).run)
                if self.owner is not None:
                    tg.start_soon(self.owner.run)
                tg.start_soon(announce_service, js, "scheduler", self.replica, self.health, self.stream_replicas)
                await self._serve_schedules_and_notifications(nc, js, registry, store, tg)
                replays = ReplayResponder(nc, Quarantine(js, OUTBOX_READER), quarantined.retrying(js, self.outbox))
                await tg.start(replays.serve)
                task_status.started()
                self.health.serving()
        finally:
            with anyio.CancelScope(shield=True):
                await self._hand_back_held()
                with contextlib.suppress(OSError, nats.errors.Error):  # the server is gone: nothing left to flush
                    await nc.close()
            self.log.info("scheduler_stopped")

    async def _serve_schedules_and_notifications(
        self, nc: NATS, js: JetStreamContext, registry: Registry, store: EventStore, tg: anyio.abc.TaskGroup
    ) -> None:
        """Launch plan schedules (their activations and fires) and notifications of ended executions: each on its
        own consumer, so that neither a slow webhook nor a burst of fires holds up deciding."""
        self.schedules = LaunchPlanSchedules(nc, js, registry)
        deciding = self.outbox.after_deciding_here if self.outbox is not None else None
        self.notifier = Notifier(js, store, registry, states=self.states, after_deciding_here=deciding)
        activations = await self._subscribe(
            js, subjects.EVENTS_STREAM, f"{subjects.ACTIVATIONS_ROOT}.>", ACTIVATIONS_CONSUMER
        )
        fires = await self._subscribe(
            js, subjects.COMMANDS_STREAM, f"{subjects.FIRES_ROOT}.>", FIRES_CONSUMER, MAX_DELIVERIES
        )
        # From its creation on: a release that adds it to a running deployment does not walk the whole log.
        ended = await self._subscribe(
            js, subjects.EVENTS_STREAM, f"{subjects.EVENTS_ROOT}.>", NOTIFIER_CONSUMER, deliver_policy=DeliverPolicy.NEW
        )
        tg.start_soon(self._consume, nc, subjects.EVENTS_STREAM, activations, self.schedules.handle_activations)
        tg.start_soon(self._consume, nc, subjects.COMMANDS_STREAM, fires, self.schedules.handle_fires)
        tg.start_soon(self._consume, nc, subjects.EVENTS_STREAM, ended, self.notifier.handle)

    async def _subscribe_commands(self, js: JetStreamContext) -> tuple[str, list[tuple[str, Pin]]]:
        """The consumer every replica pulls commands from, and with partitions, each partition's consumer with this
        replica's pin on it (the first consumer then takes only commands stored before the stream was partitioned).
        ``PartitionsMismatch`` when the stream is partitioned otherwise than this replica is set to."""
        if not self.partitions:
            check_matches(0, await partitions_of_stream(js))
            await unpartition_consumer(js, COMMANDS_CONSUMER, f"{subjects.COMMANDS_ROOT}.>")
            return await self._subscribe(
                js, subjects.COMMANDS_STREAM, f"{subjects.COMMANDS_ROOT}.>", COMMANDS_CONSUMER, COMMANDS_MAX_DELIVER
            ), []
        config = self._consumer_config(f"{subjects.COMMANDS_ROOT}.>", COMMANDS_CONSUMER, COMMANDS_MAX_DELIVER)
        names = await partition_stream(js, self.partitions, config, self.pin_seconds)
        self.owner = Partitions(js, self.partitions, self.replica, self.pin_seconds)
        self.log.info("partitions_consumed", partitions=self.partitions)
        return COMMANDS_CONSUMER, list(zip(names, self.owner.pins, strict=True))

    def _consumer_config(
        self, subject: str, durable: str, max_deliver: int = -1, deliver_policy: DeliverPolicy = DeliverPolicy.ALL
    ) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=durable,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=deliver_policy,
            ack_wait=self.ack_wait_seconds,
            max_deliver=max_deliver,
            max_ack_pending=20_000,
            max_waiting=512,
            filter_subject=subject,
        )

    async def _subscribe(
        self,
        js: JetStreamContext,
        stream: str,
        subject: str,
        durable: str,
        max_deliver: int = -1,
        deliver_policy: DeliverPolicy = DeliverPolicy.ALL,
    ) -> str:
        """The durable consumer all replicas pull ``subject`` from, created if missing (and brought to this
        release's ack wait and delivery limit if made by an older one); returns its name."""
        config = self._consumer_config(subject, durable, max_deliver, deliver_policy)
        info = await ensure_consumer(js, stream, config)
        if (info.config.ack_wait, info.config.max_deliver) != (config.ack_wait, config.max_deliver):
            await js.add_consumer(
                stream, dataclasses.replace(info.config, ack_wait=self.ack_wait_seconds, max_deliver=max_deliver)
            )
        return durable

    async def _consume(
        self,
        nc: NATS,
        stream: str,
        durable: str,
        handle: Callable[[list[Msg]], Awaitable[None]],
        wait: Callable[[], float] | None = None,
        held: Callable[[], list[Msg]] = list,
        pinned: Sequence[tuple[str, Pin]] = (),
    ) -> None:
        """Handle the consumer's messages in batches of what has arrived (each as soon as one is there); with
        ``wait``, handle an empty batch when none came within ``wait()`` seconds. Messages handled but not settled
        (``held()``) are kept in progress like those not handled yet. ``pinned``: more consumers (the command
        partitions'), each pulled with its pin, whose messages are handled in the same batches.

        Not ``PullSubscription.fetch``: now and then a fetch returned a message stored meanwhile only when its
        timeout ended (a cache report decided 4.1 s after it was stored).
        """
        arrived, arrivals = anyio.create_memory_object_stream[Msg](math.inf)
        taken: dict[int, Msg] = {}  # arrived and not yet handled, by id
        slots_of: dict[int, anyio.Semaphore] = {}  # the slot each message arrived with, by id

        def arrival(slots: anyio.Semaphore) -> Callable[[Msg], None]:
            def arrive(msg: Msg) -> None:
                taken[id(msg)], slots_of[id(msg)] = msg, slots
                arrived.send_nowait(msg)

            return arrive

        try:
            async with anyio.create_task_group() as pulling:
                slots = anyio.Semaphore(IN_FLIGHT_PER_CONSUMER)
                pulling.start_soon(Puller(nc, stream, durable, slots).run, arrival(slots))
                for consumer, pin in pinned:
                    own = anyio.Semaphore(IN_FLIGHT_PER_CONSUMER)
                    puller = Puller(nc, stream, consumer, own, wait_seconds=self.pin_seconds / 3, pin=pin)
                    pulling.start_soon(puller.run, arrival(own))
                pulling.start_soon(self._keep_in_progress, taken, held)
                while True:
                    batch: list[Msg] = []
                    with anyio.move_on_after(wait() if wait else math.inf):
                        batch.append(await arrivals.receive())
                    while len(batch) < self.batch_size:
                        try:
                            batch.append(arrivals.receive_nowait())
                        except anyio.WouldBlock:
                            break
                    if not batch and wait is None:
                        continue
                    with anyio.CancelScope(shield=True):  # a batch taken is finished, then the replica may stop
                        try:
                            await handle(batch)
                        except Exception:  # handed back below: no batch may stop the replica
                            self.log.exception("batch_failed", stream=stream, messages=len(batch))
                            await _hand_back_later(batch)
                        finally:
                            for msg in batch:
                                taken.pop(id(msg), None)
                                slots_of.pop(id(msg)).release()
        finally:
            with anyio.CancelScope(shield=True):
                arrived.close()
                for msg in _drain(arrivals):
                    with contextlib.suppress(nats.errors.Error):  # else redelivered after the ack wait
                        await msg.nak()
                arrivals.close()

    async def _keep_in_progress(self, taken: dict[int, Msg], held: Callable[[], list[Msg]]) -> None:
        """Tell the server, every third of the ack wait, that the messages this replica holds are still being
        worked on: those waiting for their batch, being handled, or held back."""
        while True:
            await anyio.sleep(self.ack_wait_seconds / 3)
            for msg in [*taken.values(), *held()]:
                try:
                    await msg.in_progress()
                except nats.errors.Error as exc:  # it is redelivered after the ack wait, and decided once
                    self.log.warning("in_progress_failed", subject=msg.subject, error=repr(exc))
                    break

    def _held_messages(self) -> list[Msg]:
        return [msg for _, messages in self._held.values() for msg in messages]

    def _batch_wait(self) -> float:
        if not self._held:
            return math.inf
        first = min(since for since, _ in self._held.values())
        return max(0.005, first + HOLD_STARTED_SECONDS - anyio.current_time())

    async def _handle_commands(self, nc: NATS, js: JetStreamContext, registry: Registry, batch: list[Msg]) -> None:
        by_execution: dict[str, list[Msg]] = defaultdict(list)
        for msg in batch:
            COMMANDS.labels(_counted_kind(msg)).inc()
            by_execution[_execution_subject_of(msg)].append(msg)
        ready = self._hold_started(by_execution)
        if len(ready) == 1:  # no task of its own: one turn of the event loop fewer before it is decided
            [(subject, messages)] = ready.items()
            await self._handle_execution(nc, js, registry, subject, messages)
            return
        async with anyio.create_task_group() as tg:
            for subject, messages in ready.items():
                tg.start_soon(self._handle_execution, nc, js, registry, subject, messages)

    def _hold_started(self, by_execution: dict[str, list[Msg]]) -> dict[str, list[Msg]]:
        """The commands to decide now, by execution. An execution's ``started`` commands alone wait up to
        ``HOLD_STARTED_SECONDS`` for more commands of it (its results, usually) to be decided with them; they
        are acked only once decided, so a replica that stops meanwhile leaves them to be redelivered."""
        now = anyio.current_time()
        ready: dict[str, list[Msg]] = {}
        held_since: dict[str, float] = {}
        for subject, (since, held) in list(self._held.items()):
            if subject in by_execution or now - since >= HOLD_STARTED_SECONDS:
                del self._held[subject]
                ready[subject], held_since[subject] = held, since
        for subject, messages in by_execution.items():
            ready.setdefault(subject, []).extend(messages)  # held commands came first in the stream
        for subject, messages in list(ready.items()):
            since = held_since.get(subject, now)
            if subject and now - since < HOLD_STARTED_SECONDS and all(_kind(msg) == "started" for msg in messages):
                del ready[subject]
                self._held[subject] = (since, messages)
        return ready

    async def _hand_back_held(self) -> None:
        held, self._held = self._held, {}
        for _, messages in held.values():
            for msg in messages:
                with contextlib.suppress(nats.errors.Error):  # else redelivered after the ack wait
                    await msg.nak()

    async def _handle_execution(
        self, nc: NATS, js: JetStreamContext, registry: Registry, subject: str, messages: list[Msg]
    ) -> None:
        """Decide one execution's commands; whatever fails is settled by the one policy of ``settle_failed``, so
        nothing a command does can stop the replica."""
        assert self.decider is not None  # set by run() before any command is consumed  # noqa: S101  an invariant of this code, not a check of input
        target = subjects.execution_of_command_subject(messages[0].subject)
        log = self.log.bind(execution=target[2] if target else None)
        accepted: list[tuple[Msg, Command | ResolvedLaunch]] = []
        for msg in messages:
            command_id = (msg.headers or {}).get(NATS_MSG_ID, "")
            if await given_up(nc, js, msg, command_id):
                continue
            decoded: Command | None = None
            try:
                decoded = codec.decode_command(msg.data, msg.headers)
                command_id = decoded.command_id
                accepted.append((msg, await self._resolve(js, registry, subject, msg, decoded, self.cluster)))
            except Exception as exc:  # settled: dead-lettered or retried, never lost
                if isinstance(decoded, LaunchExecution) and isinstance(exc, PERMANENT):
                    await report_rejected_launch(js, decoded, str(exc) or type(exc).__name__)
                await settle_failed(nc, js, msg, command_id, exc)
        if not accepted:
            return
        started = time.time_ns()
        attributes: Attributes = {"plait.execution_id": target[2] if target else "", "plait.commands": len(accepted)}
        # Decided within the execution's trace: known from the commands or the cached state, else once it is loaded.
        parent = decision_parent(accepted, self.states.get(subject))
        deciding = self.outbox.deciding(subject) if self.outbox is not None else contextlib.nullcontext()
        with deciding, span(DECIDE_SPAN, parent=parent, attributes=attributes) if parent else contextlib.nullcontext():
            try:
                outcome = await self.decider.decide(subject, [command for _, command in accepted])
            except Exception as exc:  # settled: dead-lettered or retried, never lost
                log.warning("decision_failed", error=repr(exc), commands=[command_id_of(c) for _, c in accepted])
                for msg, command in accepted:
                    await settle_failed(nc, js, msg, command_id_of(command), exc)
                return
            loaded = "" if parent or outcome.state is None else outcome.state.traceparent
            with (
                span(DECIDE_SPAN, parent=loaded, attributes=attributes, start_time=started)
                if loaded
                else (contextlib.nullcontext())
            ):
                try:
                    await self._after_decision(nc, js, outcome, accepted, log)
                except Exception:  # the decision is stored: unacked commands come back and are found decided
                    log.exception("after_decision_failed")

    async def _after_decision(
        self,
        nc: NATS,
        js: JetStreamContext,
        outcome: Outcome,
        accepted: list[tuple[Msg, Command | ResolvedLaunch]],
        log: structlog.typing.FilteringBoundLogger,
    ) -> None:
        state = outcome.state
        if outcome.events and state is not None and self.outbox is not None:
            # The attempts it queued are dispatched before the commands are acked: the acks would delay them.
            await self.outbox.publish_decided(state, outcome.events)
        rejected = {command_id_of(command): reason for command, reason in outcome.rejections}
        for msg, command in accepted:
            command_id = command_id_of(command)
            if command_id in rejected:
                if isinstance(command, ResolvedLaunch):
                    await report_rejected_launch(js, command.command, rejected[command_id])
                await reject(nc, js, msg, command_id, rejected[command_id])
            await msg.ack()
        if outcome.events:
            log.debug("decided", events=len(outcome.events), commands=len(outcome.command_ids))
        for event in outcome.events:
            if isinstance(event, TERMINAL_EVENTS):
                log.info("execution_ended", outcome=type(event).__name__)

    async def _resolve(
        self, js: JetStreamContext, registry: Registry, subject: str, msg: Msg, command: Command, default_cluster: str
    ) -> Command | ResolvedLaunch:
        """The command, checked against the subject it came on; a launch with what it names in the registry (or,
        for a relaunch, in the log), the project's default cluster, and the live executors when a cluster selector
        is to choose among them."""
        if not subject or not _sent_for(command, msg.subject):
            raise InputError(f"command for execution {command.execution_id} was sent on subject {msg.subject}")
        kind = KIND_OF_COMMAND[type(command)]
        if kind != subjects.kind_of_command_subject(msg.subject):
            raise InputError(f"a {kind!r} command was sent on subject {msg.subject}, for another kind of command")
        outside = _reports_outside_scope(command, subjects.scope_of_command_subject(msg.subject))
        if outside:
            raise InputError(f"attempt {outside} is not in the scope of subject {msg.subject}, where it was reported")
        if isinstance(command, LaunchExecution):
            assert self.decider is not None  # set by run() before any command is consumed  # noqa: S101  an invariant of this code, not a check of input
            command = with_launch_traceparent(command, msg)
            resolved = await resolve_launch(registry, self.decider.event_log, command, default_cluster)
            resolved = await with_live_executors(js, resolved)
            return msgspec.structs.replace(resolved, default_task_timeout_seconds=self.default_task_timeout_seconds)
        return command


def _execution_subject_of(msg: Msg) -> str:
    """The subject of the execution a command message was sent for ("" when its subject names none)."""
    target = subjects.execution_of_command_subject(msg.subject)
    try:
        return subjects.execution_subject(*target) if target else ""
    except ValueError:  # a token no plait name can have
        return ""


def _sent_for(command: Command, subject: str) -> bool:
    """Whether ``subject`` is a command subject of the execution ``command`` names (and, for a launch, of its
    project and domain)."""
    target = subjects.execution_of_command_subject(subject)
    if target is None:
        return False
    try:
        if isinstance(command, LaunchExecution):
            return subjects.execution_subject(command.project, command.domain, command.execution_id) == (
                subjects.execution_subject(*target)
            )
        return subjects.token(command.execution_id, "execution id") == target[2]
    except ValueError:
        return False


def _reports_outside_scope(command: Command, scope: str) -> str:
    """The first attempt ``command`` reports that a task's process of ``scope`` may not report ("" if none)."""
    reports: tuple[Command, ...] = command.results if isinstance(command, ReportAttemptResults) else (command,)
    for report in reports:
        if isinstance(report, ReportAttemptStarted | ReportAttemptResult) and not subjects.in_scope(
            scope, report.node, report.attempt_id
        ):
            return report.attempt_id
    return ""


async def _hand_back_later(messages: list[Msg]) -> None:
    """Return messages whose handling failed, to be delivered again a little later (those settled meanwhile are
    left as they are: the server ignores a late ``nak``)."""
    for msg in messages:
        with contextlib.suppress(nats.errors.Error):  # else redelivered after the ack wait
            await msg.nak(delay=RETRY_BATCH_SECONDS)


def _drain(arrivals: MemoryObjectReceiveStream[Msg]) -> list[Msg]:
    """The messages received and not taken."""
    left = []
    while True:
        try:
            left.append(arrivals.receive_nowait())
        except (anyio.WouldBlock, anyio.EndOfStream):
            return left


def _kind(msg: Msg) -> str:
    """The kind of command a message holds, from its subject (``launch``, ``started``, ``result``, ``abort``)."""
    return subjects.kind_of_command_subject(msg.subject)


_COMMAND_KINDS = frozenset(KIND_OF_COMMAND.values())


def _counted_kind(msg: Msg) -> str:
    """The command's kind as a metric label: "other" for a subject no plait client sends on (bounded cardinality)."""
    kind = _kind(msg)
    return kind if kind in _COMMAND_KINDS else "other"
