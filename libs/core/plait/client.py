"""The client: register workflows, launch executions, follow their events, query the catalog.

``AsyncClient`` holds the implementation; ``Client`` offers the same methods, blocking, by running
an ``AsyncClient`` on an event loop in a background thread.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

import anyio
import anyio.from_thread
import msgspec
import nats.errors
import nats.js.errors
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from plait import codec
from plait.adapters.cachelog import CacheLog
from plait.adapters.commands import publish_command, subject_of
from plait.adapters.connection import connect
from plait.adapters.deadletters import ERROR_HEADER
from plait.adapters.direct_reads import last_message
from plait.adapters.event_log import StoredDecision
from plait.adapters.event_store import EventStore
from plait.adapters.nats_errors import UNAVAILABLE, as_plait_errors
from plait.adapters.registry import Registry, kind_of, registration_decoder
from plait.adapters.streams import ensure_streams
from plait.core.cachelog import CacheCleared, CacheFilled, CacheReserved
from plait.core.commands import AbortExecution, LaunchExecution
from plait.core.events import TERMINAL_EVENTS, LaunchPlanRegistered, TaskRegistered, WorkflowRegistered
from plait.core.ids import content_version, new_execution_id
from plait.core.state import Execution, apply_decision
from plait.errors import ConflictError, InputError, NotFound, PlaitError, Timeout, Unavailable
from plait.protocol import subjects
from plait.replay import Record
from plait.sdk.hints import encode_value
from plait.sdk.launch_plan import LaunchPlan
from plait.sdk.workflow import Workflow

T = TypeVar("T")

LATEST = "latest"
STREAM_INFO_API = "$JS.API.STREAM.INFO"
CONSUMER_DELETE_API = "$JS.API.CONSUMER.DELETE"
FIRST_RELOAD_SECONDS = 0.001
LONGEST_RELOAD_SECONDS = 0.05
UNSEEN_DECISION_SECONDS = 1.0
"""How often ``wait`` reads the log again when no decision was sent to it: one appended while it subscribed
may have reached neither its subscription nor its first read (stored a moment after that read)."""
FOLLOWER_INACTIVE_SECONDS = 30.0  # a follower's consumer outlives a client that vanished by this long
FIRST_PUBLISH_RETRY_SECONDS = 0.05
LONGEST_PUBLISH_RETRY_SECONDS = 2.0

log = structlog.get_logger()

LaunchOutcome = str | PlaitError | None
"""How a launch was decided: None once launched, the scheduler's reason when refused, or the error that stopped it."""


class CacheClearing(msgspec.Struct, kw_only=True):
    """What ``clear_cache`` did: the keys it cleared, and why it left the others alone."""

    cleared: list[str] = msgspec.field(default_factory=list)
    skipped: dict[str, str] = msgspec.field(default_factory=dict)


def idempotent_execution_id(project: str, domain: str, key: str) -> str:
    """The execution id that launches with idempotency ``key`` in ``project``/``domain`` all share."""
    return "k" + content_version("launch", project, domain, key)[:25]


class _Refusal(msgspec.Struct):
    reason: str


_refusal_decoder = msgspec.json.Decoder(_Refusal)


def _rejection_reason(data: bytes) -> str:
    """The reason a scheduler gave for refusing a command (see ``Plait-Reply-To``)."""
    try:
        return _refusal_decoder.decode(data).reason
    except msgspec.DecodeError:
        return data.decode(errors="replace")


def _any_last_token(subject: str) -> str:
    return subject.rsplit(".", 1)[0] + ".*"


class AsyncClient:
    """Talks to plait through NATS only: the event log, the command stream and the catalog."""

    def __init__(self, nc: NATS, project: str = "default", domain: str = "development") -> None:
        try:
            project, domain = (
                subjects.check_tenant_name(project, "project"),
                subjects.check_tenant_name(domain, "domain"),
            )
        except ValueError as exc:
            raise InputError(str(exc)) from None
        self.nc, self.js = nc, nc.jetstream()
        self.project, self.domain = project, domain
        self.store = EventStore(self.js)
        self.registry = Registry(self.js)
        self._registered: set[tuple[str, ...]] = set()  # the registrations this client has stored

    @classmethod
    async def connect(cls, url: str, project: str = "default", domain: str = "development") -> AsyncClient:
        nc = await connect(url, "plait-client")
        try:
            client = cls(nc, project, domain)
            with as_plait_errors(f"connecting to {url}"):
                await ensure_streams(client.js)
        except BaseException:
            await nc.close()
            raise
        return client

    async def close(self) -> None:
        with contextlib.suppress(nats.errors.Error, OSError):  # the server is gone: there is nothing left to close
            await self.nc.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _subject(self, execution_id: str) -> str:
        try:
            return subjects.execution_subject(self.project, self.domain, execution_id)
        except ValueError as exc:
            raise InputError(str(exc)) from None

    async def register(self, entity: Workflow[Any, Any] | LaunchPlan) -> str:
        """Register a workflow and its tasks (and a launch plan's workflow, then the plan) as immutable
        versions; returns the version of what was given."""
        workflow = entity.workflow if isinstance(entity, LaunchPlan) else entity
        with as_plait_errors(f"registering {entity.name}"):
            for task_spec in workflow.spec.tasks.values():
                await self._register_once(TaskRegistered(self.project, self.domain, task_spec))
            await self._register_once(WorkflowRegistered(self.project, self.domain, workflow.spec))
            if isinstance(entity, LaunchPlan):
                await self._register_once(LaunchPlanRegistered(self.project, self.domain, entity.spec))
        return entity.spec.version

    async def _register_once(self, registration: TaskRegistered | WorkflowRegistered | LaunchPlanRegistered) -> None:
        """Store a registration unless this client did already: versions are immutable, so launching the same
        workflow again costs no round trip to the registry."""
        spec = registration.spec
        key = (registration.project, registration.domain, kind_of(registration), spec.name, spec.version)
        if key not in self._registered:
            await self.registry.register(registration)
            self._registered.add(key)

    async def launch(
        self,
        workflow: Workflow[Any, Any] | LaunchPlan | str,
        inputs: dict[str, Any] | None = None,
        *,
        version: str | None = None,
        launch_plan: bool = False,
        execution_id: str | None = None,
        idempotency_key: str | None = None,
        launched_by: str = "",
        overwrite_cache: bool = False,
        timeout: float = 30.0,
    ) -> str:
        """Launch an execution and return its id once the scheduler accepted it.

        ``workflow`` is a ``Workflow`` or a ``LaunchPlan`` (registered first), or a registered name with
        ``version`` (``"latest"``: the version registered last); a launch plan's name when ``launch_plan``.
        ``execution_id`` doubles as an idempotency key: launching it again starts nothing new.
        ``idempotency_key`` derives that id from the key, the project and the domain, so every launch
        with the same key, however often delivered, starts one execution. ``overwrite_cache`` runs cached
        tasks without looking them up, and stores their results in place of the cached ones.

        Without either, the id is made once per call, and every retry of the call's own (a publish whose
        acknowledgement was lost, say) reuses it: one call starts at most one execution. Raises ``InputError``
        when the scheduler rejects the launch (for instance, bad inputs); ``Unavailable`` or ``Timeout`` when
        it is not known whether the launch was stored: their ``execution_id`` launches it again, at most once.
        """
        if execution_id is not None and idempotency_key is not None:
            raise InputError("give an execution id or an idempotency key, not both")
        if idempotency_key is not None:
            execution_id = idempotent_execution_id(self.project, self.domain, idempotency_key)
        execution_id = execution_id or new_execution_id()
        self._subject(execution_id)  # a valid id, before anything is stored
        kind = "launch_plan" if launch_plan or isinstance(workflow, LaunchPlan) else "workflow"
        with as_plait_errors(f"launching execution {execution_id}", execution_id=execution_id):
            if isinstance(workflow, (Workflow, LaunchPlan)):
                version = await self.register(workflow)
                name = workflow.name
            elif version is None:
                raise InputError("launching by name needs a version (or 'latest')")
            else:
                name = workflow
                if version == LATEST:
                    version = await self.latest_version(name, kind=kind)
            command = LaunchExecution(
                command_id=f"launch:{execution_id}",
                execution_id=execution_id,
                project=self.project,
                domain=self.domain,
                workflow="" if kind == "launch_plan" else name,
                version="" if kind == "launch_plan" else version,
                launch_plan=name if kind == "launch_plan" else "",
                launch_plan_version=version if kind == "launch_plan" else "",
                inputs={k: encode_value(v) for k, v in (inputs or {}).items()},
                launched_by=launched_by,
                overwrite_cache=overwrite_cache,
            )
            rejection = await self._launch(command, timeout)
        if rejection is not None:
            raise InputError(rejection)
        return execution_id

    async def _launch(self, command: LaunchExecution, timeout: float) -> str | None:
        """Store the launch and wait until it has been decided: None once the execution exists, or the reason the
        scheduler refused it.

        The decision may come before the command's own acknowledgement (lost, or late): it ends the wait as well.
        """
        execution_id = command.execution_id
        outcomes, outcome = anyio.create_memory_object_stream[LaunchOutcome](math.inf)

        async def refused(msg: Msg) -> None:
            outcomes.send_nowait(_rejection_reason(msg.data))

        async def launched(msg: Msg) -> None:
            outcomes.send_nowait(None)

        async def dead_lettered(msg: Msg) -> None:  # refused, when the reply went to an earlier try's inbox
            outcomes.send_nowait((msg.headers or {}).get(ERROR_HEADER, "the scheduler refused the launch"))

        inbox = self.nc.new_inbox()
        subscriptions = [
            await self.nc.subscribe(inbox, cb=refused, max_msgs=1),
            await self.nc.subscribe(self._subject(execution_id), cb=launched, max_msgs=1),
            await self.nc.subscribe(self._dead_letter_subject(command), cb=dead_lettered, max_msgs=1),
        ]
        try:
            with anyio.fail_after(timeout):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._store_launch, command, inbox, outcomes.send_nowait)
                    decided = await outcome.receive()
                    tg.cancel_scope.cancel()
        except TimeoutError:
            raise Timeout(
                f"no scheduler decided on execution {execution_id} within {timeout:g} s; launching it again with "
                f"execution_id={execution_id!r} starts it at most once",
                execution_id=execution_id,
            ) from None
        finally:
            with anyio.CancelScope(shield=True):
                for subscription in subscriptions:
                    with contextlib.suppress(nats.errors.Error):
                        await subscription.unsubscribe()
        if isinstance(decided, PlaitError):
            raise decided
        return decided

    async def _store_launch(
        self, command: LaunchExecution, reply_to: str, decided: Callable[[LaunchOutcome], None]
    ) -> None:
        """Publish the command until JetStream acknowledges it, then report an execution launched before (this
        launch then starts nothing new), or the refusal of the same command stored before. Each try has the same
        ``Nats-Msg-Id``, so a try that was stored but whose acknowledgement was lost makes the next one a duplicate,
        stored once. An error that no retry can mend is reported as the outcome."""
        execution_id = command.execution_id
        try:
            with as_plait_errors(f"launching execution {execution_id}", execution_id=execution_id):
                ack = await self._until_answered(
                    "launch_publish_retried",
                    execution_id,
                    lambda: publish_command(self.js, command, self.project, self.domain, reply_to=reply_to),
                )
                await self._until_answered(
                    "launch_check_retried",
                    execution_id,
                    lambda: self._report_earlier_outcome(command, bool(ack.duplicate), decided),
                )
        except PlaitError as exc:
            decided(exc)

    async def _until_answered(self, retried: str, execution_id: str, call: Callable[[], Awaitable[T]]) -> T:
        """``call()``, made again with back-off while it times out or finds no responder (a stream leader being
        elected, say), until the launch's own deadline cancels it; logged as ``retried``."""
        delay = FIRST_PUBLISH_RETRY_SECONDS
        while True:
            try:
                return await call()
            except (nats.errors.TimeoutError, *UNAVAILABLE) as exc:
                if self.nc.is_closed:
                    raise
                log.warning(retried, execution=execution_id, error=str(exc) or type(exc).__name__)
            await anyio.sleep(delay)
            delay = min(delay * 2, LONGEST_PUBLISH_RETRY_SECONDS)

    async def _report_earlier_outcome(
        self, command: LaunchExecution, duplicate: bool, decided: Callable[[LaunchOutcome], None]
    ) -> None:
        """Report an execution launched before, or the refusal of the same command stored before."""
        if await self._exists(command.execution_id):
            decided(None)
        elif duplicate and (refusal := await self._refusal_of(command)) is not None:
            decided(refusal)

    def _dead_letter_subject(self, command: LaunchExecution) -> str:
        return subjects.dead_letter_subject(subject_of(command, self.project, self.domain))

    async def _refusal_of(self, command: LaunchExecution) -> str | None:
        """Why the scheduler refused this very command (stored by an earlier try), or None if it has not."""
        try:
            letter = await self.js.get_msg(subjects.DEAD_LETTER_STREAM, subject=self._dead_letter_subject(command))
        except nats.js.errors.NotFoundError:
            return None
        if letter.data != codec.encode(command):
            return None
        reason: str = (letter.headers or {}).get(ERROR_HEADER, "the scheduler refused the launch")
        return reason

    async def latest_version(self, workflow: str, kind: str = "workflow") -> str:
        """The version of ``workflow`` (or of a launch plan, with ``kind="launch_plan"``) registered last here."""
        try:
            pattern = _any_last_token(subjects.registration_subject(self.project, self.domain, kind, workflow, "_"))
        except ValueError as exc:
            raise InputError(str(exc)) from None
        newest: tuple[int, str] | None = None
        with as_plait_errors(f"looking up the latest version of {workflow}"):
            for subject in await self._subjects(pattern):
                raw = await last_message(self.js, subject)
                if raw is None or raw.seq is None or raw.data is None:
                    continue
                if newest is None or raw.seq > newest[0]:
                    newest = (raw.seq, registration_decoder.decode(raw.data).spec.version)
        if newest is None:
            raise NotFound(f"{kind.replace('_', ' ')} '{workflow}' is not registered in {self.project}/{self.domain}")
        return newest[1]

    async def records(self, execution_id: str) -> list[Record]:
        """The stored records of the execution's subject, as bytes, for replay and audit."""
        subject = self._subject(execution_id)
        records = []
        with as_plait_errors(f"reading execution {execution_id}"):
            async for raw in self.store.raw(subject, at_least=await self.store.last_sequence(subject)):
                assert raw.seq is not None and raw.data is not None
                msg_id = (raw.headers or {}).get("Nats-Msg-Id", "")
                records.append(Record(sequence=raw.seq, subject=raw.subject or subject, data=raw.data, msg_id=msg_id))
        if not records:
            raise NotFound(f"execution {execution_id} does not exist in {self.project}/{self.domain}")
        return records

    async def execution_ids(self) -> list[str]:
        """The ids of every execution in this project and domain that has a subject in the log."""
        pattern = _any_last_token(subjects.execution_subject(self.project, self.domain, "_"))
        with as_plait_errors(f"listing the executions of {self.project}/{self.domain}"):
            return sorted(subject.rsplit(".", 1)[-1] for subject in await self._subjects(pattern))

    async def _subjects(self, pattern: str) -> list[str]:
        """The subjects of the events stream that match ``pattern``, over every page of the server's answer."""
        found: list[str] = []
        while True:
            request = {"subjects_filter": pattern, "offset": len(found)}
            reply = await self.nc.request(
                f"{STREAM_INFO_API}.{subjects.EVENTS_STREAM}", msgspec.json.encode(request), timeout=10
            )
            info: dict[str, Any] = msgspec.json.decode(reply.data)
            if "error" in info:
                raise PlaitError(f"cannot list subjects {pattern}: {info['error'].get('description', info['error'])}")
            page = list((info.get("state") or {}).get("subjects") or {})
            found += page
            if not page or len(found) >= info.get("total", 0):
                return found

    async def events(self, execution_id: str, *, until_terminal: bool = True) -> AsyncIterator[StoredDecision]:
        """The execution's decisions from the start, then as they are appended; ends after the last one."""
        subject = self._subject(execution_id)
        with as_plait_errors(f"following execution {execution_id}"):
            subscription = await self.js.subscribe(
                subject,
                ordered_consumer=True,
                deliver_policy=DeliverPolicy.ALL,
                inactive_threshold=FOLLOWER_INACTIVE_SECONDS,
            )
        try:
            async for msg in subscription.messages:
                stored = StoredDecision(msg.metadata.sequence.stream, msg.data)
                yield stored
                if until_terminal and any(isinstance(e, TERMINAL_EVENTS) for e in stored.decision.events):
                    return
        finally:
            with contextlib.suppress(nats.errors.Error):
                await subscription.unsubscribe()
            await self._delete_consumer(subscription)

    async def _delete_consumer(self, subscription: JetStreamContext.PushSubscription) -> None:
        """Ask the server to remove a finished follower's consumer now, without waiting for its reply (else it
        stays ``FOLLOWER_INACTIVE_SECONDS``): clients following many short executions would pile them up."""
        name = subscription._consumer  # nats-py keeps it current when it recreates an ordered consumer
        with anyio.CancelScope(shield=True), contextlib.suppress(nats.errors.Error):
            await self.nc.publish(f"{CONSUMER_DELETE_API}.{subjects.EVENTS_STREAM}.{name}", b"")

    async def follow(self, execution_id: str) -> AsyncIterator[tuple[StoredDecision, Execution]]:
        """Each decision with the execution's state after it, until the execution ends."""
        state: Execution | None = None
        async for stored in self.events(execution_id):
            state = apply_decision(state, stored.decision, stored.sequence, stored.digest)
            if state is not None:
                yield stored, state

    async def wait(self, execution_id: str, timeout: float | None = None) -> Execution:
        """The final state of the execution, once it has succeeded, failed or been aborted.

        It reads the log twice (now, and once the terminal decision is out) and holds no consumer meanwhile:
        a core subscription to the execution's subject says when a decision is appended. Raises ``Timeout`` when
        it has not ended within ``timeout`` seconds.
        """
        subject = self._subject(execution_id)
        try:
            with anyio.fail_after(timeout), as_plait_errors(f"waiting for execution {execution_id}"):
                async with self._appends(execution_id) as appended:
                    state = await self.store.load(subject)
                    while state is None or not state.terminal:
                        try:
                            msg = await appended.next_msg(timeout=UNSEEN_DECISION_SECONDS)
                        except nats.errors.TimeoutError:
                            state = await self.store.load(subject, state)
                            continue
                        if codec.ends_execution(msg.data):
                            state = await self._load_until_terminal(subject, state)
                    return state
        except TimeoutError:
            raise Timeout(f"execution {execution_id} did not end within {timeout:g} s") from None

    async def _load_until_terminal(self, subject: str, state: Execution | None) -> Execution:
        """The state once the stream has stored the terminal decision a subscriber was just sent: the server
        may send it to subscribers a moment before the stream has stored it."""
        delay = FIRST_RELOAD_SECONDS
        while True:
            state = await self.store.load(subject, state)
            if state is not None and state.terminal:
                return state
            await anyio.sleep(delay)
            delay = min(delay * 2, LONGEST_RELOAD_SECONDS)

    @contextlib.asynccontextmanager
    async def _appends(self, execution_id: str) -> AsyncIterator[Subscription]:
        """A core subscription to the execution's subject: each decision appended from now on is sent to it, without
        its stream sequence (so it says when to read the log, not what the log holds)."""
        subscription = await self.nc.subscribe(self._subject(execution_id))
        try:
            yield subscription
        finally:
            with anyio.CancelScope(shield=True), contextlib.suppress(nats.errors.Error):
                await subscription.unsubscribe()

    async def _exists(self, execution_id: str) -> bool:
        return await last_message(self.js, self._subject(execution_id)) is not None

    async def get(self, execution_id: str) -> Execution:
        """The execution's current state, rebuilt from its events."""
        subject = self._subject(execution_id)
        with as_plait_errors(f"reading execution {execution_id}"):
            state = await self.store.load(subject, at_least=await self.store.last_sequence(subject))
        if state is None:
            raise NotFound(f"execution {execution_id} does not exist in {self.project}/{self.domain}")
        return state

    async def abort(self, execution_id: str, reason: str = "aborted by request") -> None:
        command = AbortExecution(command_id=f"abort:{execution_id}", execution_id=execution_id, reason=reason)
        self._subject(execution_id)
        with as_plait_errors(f"aborting execution {execution_id}"):
            await publish_command(self.js, command, self.project, self.domain)

    async def list_executions(
        self, *, status: str | None = None, limit: int = 20, min_sequence: int | None = None
    ) -> list[dict[str, Any]]:
        """Recent executions of this project and domain, newest first, as the catalog has projected them: by
        default once it has projected everything logged so far (what this client saw end is listed); with
        ``min_sequence=0``, at once, as far as it got."""
        if min_sequence is None:
            min_sequence = await self.log_position()
        request = {
            "project": self.project,
            "domain": self.domain,
            "status": status,
            "limit": limit,
            "min_sequence": min_sequence,
        }
        executions: list[dict[str, Any]] = (await self.query("executions.list", request))["executions"]
        return executions

    async def log_position(self) -> int:
        """The event stream's last sequence: as ``min_sequence``, it makes a catalog query see everything up to now."""
        with as_plait_errors("reading the event stream's position"):
            info = await self.js.stream_info(subjects.EVENTS_STREAM)
        return info.state.last_seq

    async def cache_entries(
        self, task: str | None = None, limit: int = 50, *, min_sequence: int = 0
    ) -> list[dict[str, Any]]:
        """Entries of this project and domain's cache (of one task, if given), newest first."""
        request = {**self._here, "task": task, "limit": limit, "min_sequence": min_sequence}
        entries: list[dict[str, Any]] = (await self.query("cache.list", request))["entries"]
        return entries

    async def cache_entry(self, key: str, *, min_sequence: int = 0) -> dict[str, Any]:
        """One cache entry with its outputs and the execution, node and attempt that produced them."""
        request = {**self._here, "cache_key": key, "min_sequence": min_sequence}
        entry: dict[str, Any] = (await self.query("cache.show", request))["entry"]
        return entry

    async def clear_cache(self, keys: list[str], cleared_by: str = "") -> CacheClearing:
        """Clear each filled key, so its next look-up computes it again; a key that is reserved (being
        computed), free, or that changed meanwhile is left alone and reported in ``skipped``."""
        outcome = CacheClearing()
        for key in keys:
            try:
                log = CacheLog(self.js, self.project, self.domain, key)
            except ValueError as exc:  # not a possible cache key
                outcome.skipped[key] = str(exc)
                continue
            with as_plait_errors(f"clearing cache key {key}"):
                sequence, record = await log.last()
                if not isinstance(record, CacheFilled):
                    outcome.skipped[key] = _not_clearable(record)
                    continue
                cleared = CacheCleared(
                    project=self.project,
                    domain=self.domain,
                    cache_key=key,
                    cleared_by=cleared_by,
                    at=datetime.now(UTC),
                )
                try:
                    await log.append(cleared, expected=sequence)
                except ConflictError:
                    outcome.skipped[key] = "it changed while being cleared; look at it again"
                    continue
            outcome.cleared.append(key)
        return outcome

    async def lineage(
        self, target: str, direction: str = "both", depth: int = 3, *, max_edges: int = 5000, min_sequence: int = 0
    ) -> dict[str, Any]:
        """The lineage graph around an artifact hash or an execution id: ``root``, ``nodes`` and ``edges``;
        ``truncated`` when it met more than ``max_edges`` edges within ``depth`` steps."""
        request = {**self._here, "target": target, "direction": direction, "depth": depth, "max_edges": max_edges}
        return await self.query("lineage", {**request, "min_sequence": min_sequence})

    async def tasks(self, name: str | None = None, *, min_sequence: int = 0) -> list[dict[str, Any]]:
        """Registered tasks, by name, each with its versions newest first."""
        return await self.entities("task", name, min_sequence=min_sequence)

    async def workflows(self, name: str | None = None, *, min_sequence: int = 0) -> list[dict[str, Any]]:
        return await self.entities("workflow", name, min_sequence=min_sequence)

    async def launch_plans(self, name: str | None = None, *, min_sequence: int = 0) -> list[dict[str, Any]]:
        return await self.entities("launch_plan", name, min_sequence=min_sequence)

    async def show_entity(
        self, kind: str, name: str, version: str = LATEST, *, min_sequence: int = 0
    ) -> dict[str, Any]:
        """A registered ``kind`` (task, workflow, launch_plan) version: its spec and when it was registered."""
        request = {**self._here, "kind": kind, "name": name, "version": version, "min_sequence": min_sequence}
        entity: dict[str, Any] = (await self.query("registry.show", request))["entity"]
        return entity

    async def entities(self, kind: str, name: str | None = None, *, min_sequence: int = 0) -> list[dict[str, Any]]:
        """Registered ``kind`` (task, workflow, launch_plan) entities by name, each with its versions newest first."""
        request = {**self._here, "kind": kind, "name": name, "min_sequence": min_sequence}
        entities: list[dict[str, Any]] = (await self.query("registry.list", request))["entities"]
        return entities

    @property
    def _here(self) -> dict[str, str]:
        return {"project": self.project, "domain": self.domain}

    async def query(self, what: str, request: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        """Ask the catalog (``executions.list``, ``cache.show``, ``lineage``, ...) about this client's project and
        domain, unless ``request`` names others; raises ``NotFound`` for missing items."""
        try:
            reply = await self.nc.request(
                f"{subjects.CATALOG_ROOT}.{what}", msgspec.json.encode({**self._here, **request}), timeout=timeout
            )
        except nats.errors.NoRespondersError:
            raise Unavailable("no catalog replica is running (start one with `plait catalog`)") from None
        except nats.errors.TimeoutError:
            raise Timeout(f"the catalog did not answer within {timeout:.0f} s") from None
        except nats.errors.Error as exc:  # the connection is closed, or reconnecting
            raise Unavailable(f"cannot ask the catalog: {exc or type(exc).__name__}") from exc
        answer: dict[str, Any] = msgspec.json.decode(reply.data)
        error = answer.get("error")
        if error:
            if error.get("type") == "not_found":
                raise NotFound(error.get("message", "not found"))
            raise PlaitError(error.get("message", str(error)))
        return answer


def _not_clearable(record: object) -> str:
    if isinstance(record, CacheReserved):
        return f"it is being computed by {record.execution_id}/{record.node}"
    return "it has no entry"


class Client:
    """The blocking twin of ``AsyncClient``: the same methods, run on a background event loop."""

    def __init__(self, url: str, project: str = "default", domain: str = "development") -> None:
        self._portal_cm = anyio.from_thread.start_blocking_portal()
        self._portal = self._portal_cm.__enter__()
        try:
            self._async = self._portal.call(AsyncClient.connect, url, project, domain)
        except BaseException:
            self._portal_cm.__exit__(None, None, None)
            raise

    def _call(self, fn: Callable[..., Coroutine[Any, Any, T]], *args: Any, **kwargs: Any) -> T:
        result: T = self._portal.call(functools.partial(fn, *args, **kwargs))
        return result

    def register(self, entity: Workflow[Any, Any] | LaunchPlan) -> str:
        return self._call(self._async.register, entity)

    def launch(
        self, workflow: Workflow[Any, Any] | LaunchPlan | str, inputs: dict[str, Any] | None = None, **options: Any
    ) -> str:
        return self._call(self._async.launch, workflow, inputs, **options)

    def wait(self, execution_id: str, timeout: float | None = None) -> Execution:
        return self._call(self._async.wait, execution_id, timeout)

    def get(self, execution_id: str) -> Execution:
        return self._call(self._async.get, execution_id)

    def abort(self, execution_id: str, reason: str = "aborted by request") -> None:
        self._call(self._async.abort, execution_id, reason)

    def query(self, what: str, request: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        return self._call(self._async.query, what, request, timeout)

    def records(self, execution_id: str) -> list[Record]:
        return self._call(self._async.records, execution_id)

    def execution_ids(self) -> list[str]:
        return self._call(self._async.execution_ids)

    def list_executions(
        self, *, status: str | None = None, limit: int = 20, min_sequence: int | None = None
    ) -> list[dict[str, Any]]:
        return self._call(self._async.list_executions, status=status, limit=limit, min_sequence=min_sequence)

    def latest_version(self, workflow: str, kind: str = "workflow") -> str:
        return self._call(self._async.latest_version, workflow, kind)

    def log_position(self) -> int:
        return self._call(self._async.log_position)

    def cache_entries(self, task: str | None = None, limit: int = 50, *, min_sequence: int = 0) -> list[dict[str, Any]]:
        return self._call(self._async.cache_entries, task, limit, min_sequence=min_sequence)

    def cache_entry(self, key: str, *, min_sequence: int = 0) -> dict[str, Any]:
        return self._call(self._async.cache_entry, key, min_sequence=min_sequence)

    def clear_cache(self, keys: list[str], cleared_by: str = "") -> CacheClearing:
        return self._call(self._async.clear_cache, keys, cleared_by)

    def lineage(
        self, target: str, direction: str = "both", depth: int = 3, *, max_edges: int = 5000, min_sequence: int = 0
    ) -> dict[str, Any]:
        return self._call(self._async.lineage, target, direction, depth, max_edges=max_edges, min_sequence=min_sequence)

    def tasks(self, name: str | None = None, *, min_sequence: int = 0) -> list[dict[str, Any]]:
        return self._call(self._async.tasks, name, min_sequence=min_sequence)

    def workflows(self, name: str | None = None, *, min_sequence: int = 0) -> list[dict[str, Any]]:
        return self._call(self._async.workflows, name, min_sequence=min_sequence)

    def launch_plans(self, name: str | None = None, *, min_sequence: int = 0) -> list[dict[str, Any]]:
        return self._call(self._async.launch_plans, name, min_sequence=min_sequence)

    def entities(self, kind: str, name: str | None = None, *, min_sequence: int = 0) -> list[dict[str, Any]]:
        return self._call(self._async.entities, kind, name, min_sequence=min_sequence)

    def show_entity(self, kind: str, name: str, version: str = LATEST, *, min_sequence: int = 0) -> dict[str, Any]:
        return self._call(self._async.show_entity, kind, name, version, min_sequence=min_sequence)

    def events(self, execution_id: str) -> Iterator[StoredDecision]:
        with self._portal.wrap_async_context_manager(_collect(self._async.events(execution_id))) as items:
            yield from items

    def close(self) -> None:
        try:
            self._call(self._async.close)
        finally:
            self._portal_cm.__exit__(None, None, None)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@contextlib.asynccontextmanager
async def _collect(events: AsyncIterator[StoredDecision]) -> AsyncIterator[list[StoredDecision]]:
    yield [event async for event in events]
