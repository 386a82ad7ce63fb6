"""The executor service: pulls the dispatch records of one (cluster, queue) and runs their attempts."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from functools import partial

import anyio
import anyio.abc
import nats.errors
import nats.js.errors
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from structlog.typing import FilteringBoundLogger

from plait.adapters.connection import connect, reconnection_count
from plait.adapters.object_store import ValueStore
from plait.adapters.pull import Puller, ensure_consumer
from plait.adapters.registry import Registry
from plait.adapters.services import announce_service
from plait.adapters.stream_readiness import streams_ready
from plait.core.commands import DEFAULT_ATTEMPT_DEADLINE_SECONDS
from plait.core.values import DEFAULT_INLINE_VALUE_LIMIT
from plait.errors import InputError, PlaitError
from plait.metrics.health import Health
from plait.protocol import subjects
from plait.protocol.executors import ANNOUNCE_EVERY_SECONDS, parse_labels
from plait.protocol.nats_jwt import read_account_key
from plait.settings import VARIABLES, Settings
from plait_executor import hand_on
from plait_executor.announcing import Announcer, announcement
from plait_executor.backend import (
    BackendFactory,
    backend_from_settings,
    local_backend,
    with_live_output,
    with_scratch,
)
from plait_executor.code_bundles import CodeCache, with_code_bundles
from plait_executor.folders import executor_folders, remove_abandoned
from plait_executor.live_output import LiveOutput
from plait_executor.registered import GeneratedTasksBackend, registered_only
from plait_executor.runner import STARTED_AFTER_SECONDS, AttemptRunner
from plait_executor.slots import AttemptSlots
from plait_executor.stored_values import with_values
from plait_executor.task_callout import serve_task_callout

log: FilteringBoundLogger = structlog.get_logger("plait.executor")

_CLOSE_SECONDS = 5.0
ACK_WAIT_SECONDS = 5.0
"""How long a dispatch stays with an executor that says nothing: the attempt of an executor that died moves to
another one after this long (the executor heartbeats a held dispatch at a third of it)."""
MAX_DELIVERIES = 5
"""Deliveries of one dispatch: the last one is reported as a system failure instead of run (the attempt keeps
losing its executor), and the server delivers it no more."""
PREFETCH_PER_WORKER = 4
"""Attempts held per worker process: while one attempt runs, the next ones wait in memory and the last ones
report, so a worker never idles on a round trip to the server."""


def consumer_name(cluster: str, queue: str) -> str:
    """The durable consumer all executor replicas of one (cluster, queue) share: ``executor-<cluster>-<queue>``, or,
    when either holds a '-' (so that ``gpu-a100``/``train`` and ``gpu``/``a100-train`` would share one), with the
    cluster's length first: ``executor-8-gpu-a100-train``."""
    cluster_token, queue_token = subjects.token(cluster, "cluster"), subjects.token(queue, "queue")
    if "-" in cluster_token + queue_token:
        return f"executor-{len(cluster_token)}-{cluster_token}-{queue_token}"
    return f"executor-{cluster_token}-{queue_token}"


def earlier_consumer_name(cluster: str, queue: str) -> str:
    """The name earlier releases gave the consumer of (cluster, queue), ambiguous when either holds a '-'."""
    return f"executor-{subjects.token(cluster, 'cluster')}-{subjects.token(queue, 'queue')}"


async def queue_consumer(js: JetStreamContext, cluster: str, queue: str, subject: str) -> str:
    """The name of the consumer of (cluster, queue): the one an earlier release made, while it takes this queue's
    subject (two consumers of one subject would each run every dispatch), else ``consumer_name``."""
    earlier = earlier_consumer_name(cluster, queue)
    if earlier != consumer_name(cluster, queue):
        try:
            info = await js.consumer_info(subjects.DISPATCH_STREAM, earlier)
        except nats.js.errors.NotFoundError:
            pass
        else:
            if info.config.filter_subject == subject:
                return earlier
    return consumer_name(cluster, queue)


class ExecutorService:
    """Runs the attempts dispatched to one (cluster, queue) on its back end: each in a warm local worker process
    (the default), or as a Kubernetes Job (``backend``, see ``plait_executor.backend``).

    Replicas share one durable consumer, so each dispatch message (one attempt, or a chunk of the attempts one
    decision queued) goes to one of them; a replica runs at most ``concurrency`` attempts at a time, and pulls
    more only while it holds fewer than ``prefetch`` attempts (default ``PREFETCH_PER_WORKER`` per worker): the
    ones waiting for a worker, running, or reporting (a chunk is taken whole, see ``AttemptSlots``). When ``run``
    is cancelled it stops taking dispatches, hands back at once the attempts no worker has taken, and gives the
    running attempts ``grace_seconds`` to finish and report; the others are handed back unacknowledged,
    so another replica runs them again.
    """

    def __init__(
        self,
        nats_url: str,
        *,
        replica: str | None = None,
        cluster: str = "local",
        queue: str = "default",
        concurrency: int | None = None,
        prefetch: int | None = None,
        ack_wait_seconds: float = ACK_WAIT_SECONDS,
        grace_seconds: float = 30.0,
        started_after_seconds: float = STARTED_AFTER_SECONDS,
        max_deliveries: int = MAX_DELIVERIES,
        attempt_deadline_seconds: float = DEFAULT_ATTEMPT_DEADLINE_SECONDS,
        stream_replicas: int | None = None,
        backend: BackendFactory | None = None,
        inline_value_limit: int = DEFAULT_INLINE_VALUE_LIMIT,
        backend_name: str = "local",
        labels: dict[str, str] | None = None,
        announce_seconds: float = ANNOUNCE_EVERY_SECONDS,
        callout_seed_file: str = "",
    ) -> None:
        self.nats_url = nats_url
        self.stream_replicas = stream_replicas
        self.cluster = cluster
        self.queue = queue
        self.concurrency = concurrency or os.cpu_count() or 1
        self.prefetch = max(prefetch or PREFETCH_PER_WORKER * self.concurrency, self.concurrency)
        self.replica = replica or f"{socket.gethostname()}:{os.getpid()}"
        self.ack_wait_seconds = ack_wait_seconds
        self.grace_seconds = grace_seconds
        self.started_after_seconds = started_after_seconds
        self.max_deliveries = max_deliveries
        self.attempt_deadline_seconds = attempt_deadline_seconds
        self.subject = subjects.dispatch_subject(cluster, queue)
        self.consumer = consumer_name(cluster, queue)
        self._log = log.bind(worker=self.replica, cluster=cluster, queue=queue)
        self._runner: AttemptRunner | None = None
        self.health = Health()
        self.backend = backend or partial(local_backend, self.concurrency)
        self.inline_value_limit = inline_value_limit
        self.backend_name, self.labels, self.announce_seconds = backend_name, dict(labels or {}), announce_seconds
        self.callout_key = (
            read_account_key(callout_seed_file, VARIABLES["nats_callout_seed_file"]) if callout_seed_file else None
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> ExecutorService:
        """A replica as ``settings`` describe it (``PLAIT_NATS_URL``, ``PLAIT_REPLICA``, ``PLAIT_QUEUE``...)."""
        concurrency = settings.concurrency or None
        return cls(
            settings.required("nats_url"),
            replica=settings.replica_name,
            cluster=settings.cluster,
            queue=settings.queue,
            concurrency=concurrency,
            ack_wait_seconds=settings.dispatch_ack_wait_seconds,
            attempt_deadline_seconds=settings.attempt_deadline_seconds,
            stream_replicas=settings.stream_replicas,
            backend=backend_from_settings(settings, concurrency or os.cpu_count() or 1),
            inline_value_limit=settings.inline_value_limit,
            backend_name=settings.executor_backend,
            labels=_labels(settings.labels),
            callout_seed_file=settings.nats_callout_seed_file,
        )

    def counts(self) -> dict[str, int]:
        """What this replica's attempt runner has done so far (``AttemptRunner.counts``; empty before it runs)."""
        return self._runner.counts() if self._runner is not None else {}

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; ``task_status.started()`` once the consumer exists and the workers are starting."""
        nc = await connect(self.nats_url, name=f"plait-executor {self.replica}")
        self.health.watch_nats(nc)
        try:
            js = nc.jetstream()
            await streams_ready(js, self.stream_replicas, self.health)
            self.consumer = await queue_consumer(js, self.cluster, self.queue, self.subject)
            config = self._consumer_config()
            info = await ensure_consumer(js, subjects.DISPATCH_STREAM, config)
            if info.config.filter_subject != self.subject:
                raise PlaitError(
                    f"the dispatch consumer {self.consumer} takes {info.config.filter_subject}, not this executor's "
                    f"{self.subject}: another queue's executors use it"
                )
            if (info.config.ack_wait, info.config.max_deliver) != (config.ack_wait, config.max_deliver):
                info = await js.add_consumer(subjects.DISPATCH_STREAM, config)  # made by an older release: updated
            await self._remove_abandoned_folders()
            async with self.backend() as backend, executor_folders() as folders:
                registry = Registry(js)
                live_output = LiveOutput(js, folders.live, partial(self.health.set_degraded, "live_output"))
                tailed = with_live_output(with_scratch(backend, str(folders.scratch)), live_output)
                runs = with_values(
                    GeneratedTasksBackend(with_code_bundles(tailed, CodeCache(js, folders.code)), registry),
                    ValueStore.on_jetstream(js, self.inline_value_limit),
                )
                runner = self._runner = AttemptRunner(
                    js,
                    registered_only(runs, registry),  # see plait_executor.registered
                    self.replica,
                    heartbeat_seconds=(info.config.ack_wait or self.ack_wait_seconds) / 3,
                    started_after=self.started_after_seconds,
                    max_deliveries=info.config.max_deliver or self.max_deliveries,
                    deadline_seconds=self.attempt_deadline_seconds,
                    reconnections=lambda: reconnection_count(nc),
                    consumer=self.consumer,
                    workers=self.concurrency,
                )
                announcer = Announcer(
                    js,
                    announcement(self.cluster, self.queue, self.replica, self.backend_name, self.labels),
                    self.announce_seconds,
                    self.stream_replicas,
                )
                async with anyio.create_task_group() as live:
                    if self.callout_key is not None:  # answers for every executor's task pods: see task_callout
                        await live.start(partial(serve_task_callout, nc, self.callout_key))
                    task_status.started()
                    self.health.serving()
                    self._log.info(
                        "executor_started",
                        concurrency=self.concurrency,
                        prefetch=self.prefetch,
                        consumer=self.consumer,
                        folder=str(folders.home),
                    )
                    live.start_soon(announcer.run)
                    live.start_soon(live_output.tick)
                    live.start_soon(announce_service, js, "executor", self.replica, self.health, self.stream_replicas)
                    await self._serve(nc, runner)
                    live.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await _close(nc)
            self._log.info("executor_stopped", **self._runner.counts() if self._runner else {})

    async def _remove_abandoned_folders(self) -> None:
        """What executors killed on this host left in the temporary directory (``plait_executor.folders``)."""
        try:
            removed = await remove_abandoned()
        except OSError as error:  # the temporary directory unreadable: making this executor's own folder says so next
            self._log.warning("abandoned_folders_unchecked", error=str(error))
            return
        if removed:
            self._log.info("abandoned_folders_removed", folders=removed)

    def _consumer_config(self) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=self.consumer,
            filter_subject=self.subject,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=self.ack_wait_seconds,
            max_deliver=self.max_deliveries,
        )

    async def _serve(self, nc: NATS, runner: AttemptRunner) -> None:
        slots = AttemptSlots(self.prefetch)
        puller = Puller(nc, subjects.DISPATCH_STREAM, self.consumer, slots, wait_seconds=hand_on.PULL_WAIT_SECONDS)
        # Attempts outlive the cancellation that stops the pulling, until the grace period ends.
        attempts_scope = anyio.CancelScope(shield=True)
        pulling_ended = anyio.Event()
        async with anyio.create_task_group() as service:
            with attempts_scope:
                async with anyio.create_task_group() as heartbeats:
                    heartbeats.start_soon(runner.keep_in_progress)
                    heartbeats.start_soon(runner.report_started_when_due)
                    heartbeats.start_soon(runner.hand_on_waiting, slots, lambda: puller.asking)
                    async with anyio.create_task_group() as attempts:

                        def start(msg: Msg) -> None:
                            attempts.start_soon(runner.handle, msg, runner.read(msg, slots), slots)

                        service.start_soon(self._pull, puller, runner, slots, start, attempts_scope, pulling_ended)
                        await pulling_ended.wait()
                    heartbeats.cancel_scope.cancel()

    async def _pull(
        self,
        puller: Puller,
        runner: AttemptRunner,
        slots: AttemptSlots,
        start: Callable[[Msg], None],
        attempts_scope: anyio.CancelScope,
        pulling_ended: anyio.Event,
    ) -> None:
        try:
            await puller.run(start)
        finally:
            runner.stop_taking()
            attempts_scope.deadline = anyio.current_time() + self.grace_seconds
            pulling_ended.set()
            self._log.info("executor_stopping", held=slots.held, grace=self.grace_seconds)


def _labels(text: str) -> dict[str, str]:
    try:
        return parse_labels(text)
    except ValueError as exc:
        raise InputError(f"PLAIT_EXECUTOR_LABELS: {exc}") from None


async def _close(nc: NATS) -> None:
    with anyio.move_on_after(_CLOSE_SECONDS):
        try:
            await nc.drain()
            return
        except nats.errors.Error as exc:
            log.warning("drain_failed", error=repr(exc))
    await nc.close()
