"""The cache work a stored decision asks for: look-ups, fills and releases, each ending in a command or a record.

Everything here is idempotent, because a decision's cache work may be done twice (by the replica that
appended it, and by the outbox that tails the log for replicas that crashed): look-ups find the reservation
they took the first time, records and commands carry ids that JetStream deduplicates, and ``decide`` ignores
a report for a look-up round that is over.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import nats.errors
import structlog
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from plait.adapters.cachelog import CacheLog, entry_decoder
from plait.adapters.commands import publish_command, schedule_command
from plait.adapters.direct_reads import BatchUnsupported, last_messages
from plait.adapters.event_store import EventStore
from plait.core.cachelog import (
    CacheEntryRecord,
    CacheFilled,
    CacheReleased,
    CacheReserved,
    CacheWaiter,
    reserved_by,
)
from plait.core.commands import CacheOutcome, ReportCacheLookup, ReportCacheLookups
from plait.core.events import (
    Event,
    ExecutionAborted,
    ExecutionFailed,
    NodeCacheLookup,
    NodeFailed,
    NodeSucceeded,
)
from plait.core.ids import content_version
from plait.core.state import Execution
from plait.errors import ConflictError, TransportError
from plait.metrics.names import CACHE_LOOKUPS
from plait.protocol import subjects
from plait.protocol.cache import (
    MAX_KEYS_PER_LOOKUP,
    CacheLookupManyReply,
    CacheLookupManyRequest,
    CacheLookupReply,
)

REPORTS_PER_COMMAND_BYTES = 1_000_000  # look-up reports sent together, up to about this size
MAX_RACES = 20  # a key's log moved under this look-up this many times in a row: something is very wrong

_reply_decoder = msgspec.json.Decoder(CacheLookupManyReply)
_encoder = msgspec.json.Encoder()
log = structlog.get_logger()


def lookup_report(
    execution_id: str, node: str, key: str, round_: int, outcome: CacheOutcome, reason: str = "", **found: Any
) -> ReportCacheLookup:
    """The report of look-up ``round_`` of a node; its id names the round and what happened, so the same report
    sent twice (by two replicas doing the same work) is stored once."""
    return ReportCacheLookup(
        command_id=f"cache:{execution_id}/{node}/{round_}/{reason or outcome}",
        execution_id=execution_id,
        node=node,
        cache_key=key,
        round=round_,
        outcome=outcome,
        **found,
    )


def _report(state: Execution, event: NodeCacheLookup, outcome: CacheOutcome, **found: Any) -> ReportCacheLookup:
    return lookup_report(state.execution_id, event.node, event.cache_key, event.round, outcome, **found)


def _batches(reports: Sequence[ReportCacheLookup]) -> Iterator[ReportCacheLookup | ReportCacheLookups]:
    """The reports as commands: alone, or together in messages of about ``REPORTS_PER_COMMAND_BYTES``."""
    if len(reports) == 1:
        yield reports[0]
        return
    batch: list[ReportCacheLookup] = []
    size = 0
    for report in reports:
        report_size = len(_encoder.encode(report))
        if batch and size + report_size > REPORTS_PER_COMMAND_BYTES:
            yield _together(batch)
            batch, size = [], 0
        batch.append(report)
        size += report_size
    if batch:
        yield _together(batch)


def _together(reports: list[ReportCacheLookup]) -> ReportCacheLookups:
    """One command for several reports; its id is derived from theirs, so the same reports sent again are one."""
    command_id = "cache-batch:" + content_version(sorted(r.command_id for r in reports))
    return ReportCacheLookups(command_id=command_id, execution_id=reports[0].execution_id, reports=tuple(reports))


def still_looking_up(state: Execution, event: NodeCacheLookup) -> bool:
    """Whether the node is still in the look-up round ``event`` started: only then is the key looked up (a
    replayed decision must not reserve a key for a node that moved on, or ended)."""
    node = state.nodes[event.node]
    return (
        not state.terminal
        and node.status == "cache_lookup"
        and (node.cache_round, node.cache_key) == (event.round, event.cache_key)
    )


def may_need_cache_work(events: Sequence[Event]) -> bool:
    """Whether a decision's events may call for cache work; ``CacheKeeper.wants`` decides, with the state."""
    return any(
        isinstance(e, NodeCacheLookup | NodeSucceeded | NodeFailed | ExecutionFailed | ExecutionAborted) for e in events
    )


def _may_fill(state: Execution, node_id: str, last: CacheEntryRecord | None) -> bool:
    """Whether the node's result may be stored over the key's ``last`` record: its own reservation; or, for an
    execution that overwrites the cache (it reserves nothing), a record older than the node's result that is
    no one's reservation."""
    if reserved_by(last, state.execution_id, node_id):
        return True
    if not state.overwrite_cache or isinstance(last, CacheReserved):
        return False
    node = state.nodes[node_id]
    finished = node.map_ended_at if node.map_size >= 0 else node.attempts[-1].finished_at if node.attempts else None
    return last is None or finished is None or last.at <= finished


class CacheKeeper:
    """Does the cache work of decisions. ``reservation_seconds``: how often a look-up waiting on a reservation
    checks its holder (a holder whose node ended, or whose execution did, without filling or releasing the key
    loses it then); ``lookup_timeout``: how long to wait for the catalog before going on
    without it (the key's own log is then the only source)."""

    def __init__(
        self, nc: NATS, js: JetStreamContext, *, reservation_seconds: float = 600.0, lookup_timeout: float = 0.5
    ) -> None:
        self.nc, self.js = nc, js
        self.store = EventStore(js)
        self.reservation = timedelta(seconds=reservation_seconds)
        self.lookup_timeout = lookup_timeout
        self.hits = self.misses = self.waits = 0
        self.catalog_hits = 0  # hits the catalog answered (the others came from the key's log)

    def wants(self, state: Execution, events: Sequence[Event]) -> bool:
        """Whether ``events`` call for cache work: look-ups, or a cached node that ended, or an execution that
        ended with cached nodes (uncached workflows never do)."""
        for event in events:
            match event:
                case NodeCacheLookup() if still_looking_up(state, event):
                    return True
                case NodeSucceeded(node=node_id) | NodeFailed(node=node_id) if state.nodes[node_id].cache_key:
                    return True
                case ExecutionFailed() | ExecutionAborted() if any(n.cache_key for n in state.nodes.values()):
                    return True
        return False

    async def after_decision(self, state: Execution, events: Sequence[Event]) -> None:
        """The look-ups, fills and releases that ``events`` (just stored for ``state``'s execution) call for."""
        lookups = [event for event in events if isinstance(event, NodeCacheLookup) and still_looking_up(state, event)]
        if lookups:
            await self.lookup(state, lookups)
        work: list[Awaitable[None]] = []  # each on its own key: done together
        for event in events:
            match event:
                case NodeSucceeded(node=node_id) if state.nodes[node_id].cache_key:
                    work.append(self.fill(state, event))
                case NodeFailed(node=node_id) if state.nodes[node_id].cache_key:
                    work.append(self.release(state, node_id, "its node failed"))
                case ExecutionFailed() | ExecutionAborted():
                    for node in state.nodes.values():
                        if node.cache_key and node.status in ("aborted", "failed"):
                            work.append(self.release(state, node.id, f"its execution ended {state.status}"))
        await asyncio.gather(*work)

    async def lookup(self, state: Execution, lookups: Sequence[NodeCacheLookup]) -> None:
        """Look up a decision's keys: the catalog's entries in one request, the others in each key's log; then
        report every outcome, as few commands as the message size allows."""
        entries = await self._ask_catalog(state.project, state.domain, [event.cache_key for event in lookups])
        unanswered = [event.cache_key for event in lookups if event.cache_key not in entries]
        filled = await self._filled_in_log(state.project, state.domain, unanswered) if unanswered else {}

        async def resolve(event: NodeCacheLookup) -> ReportCacheLookup:
            entry = entries.get(event.cache_key) or filled.get(event.cache_key)
            if entry is None:
                return await self._resolve_in_log(state, event)
            self.hits += 1
            CACHE_LOOKUPS.labels("hit").inc()
            self.catalog_hits += event.cache_key in entries
            found = {"outputs": entry.outputs, "source_execution": entry.execution_id, "source_node": entry.node}
            return _report(state, event, "hit", **found)

        reports = await asyncio.gather(*(resolve(event) for event in lookups))
        for batch in _batches(reports):
            await publish_command(self.js, batch, state.project, state.domain)
        log.debug(
            "cache_looked_up",
            execution=state.execution_id,
            keys=len(lookups),
            from_catalog=len(entries),
            from_logs=len(filled),
        )

    async def _filled_in_log(self, project: str, domain: str, keys: list[str]) -> dict[str, CacheLookupReply]:
        """The entries of the keys whose log ends with a fill, read together (the catalog may not have projected
        a fill yet); none when the server cannot read many subjects at once, and each key is then read alone."""
        by_subject = {subjects.cache_entry_subject(project, domain, key): key for key in keys}
        try:
            newest = await last_messages(self.js, subjects.EVENTS_STREAM, list(by_subject))
        except (BatchUnsupported, TransportError, nats.errors.Error) as exc:
            log.debug("cache_log_batch_unread", keys=len(keys), error=repr(exc))
            return {}
        filled: dict[str, CacheLookupReply] = {}
        for subject, raw in newest.items():
            record = entry_decoder.decode(raw.data or b"")
            if isinstance(record, CacheFilled) and subject in by_subject:
                filled[by_subject[subject]] = CacheLookupReply(
                    found=True, outputs=record.outputs, execution_id=record.execution_id, node=record.node
                )
        return filled

    async def _resolve_in_log(self, state: Execution, event: NodeCacheLookup) -> ReportCacheLookup:
        """What the key's own log says: filled, reserved (by this node now, if it was free), or held by another."""
        node, key = event.node, event.cache_key
        cache_log = CacheLog(self.js, state.project, state.domain, key)
        for _ in range(MAX_RACES):
            sequence, last = await cache_log.last()
            if isinstance(last, CacheFilled):
                self.hits += 1
                CACHE_LOOKUPS.labels("hit").inc()
                found = {"outputs": last.outputs, "source_execution": last.execution_id, "source_node": last.node}
                return _report(state, event, "hit", **found)
            if reserved_by(last, state.execution_id, node):
                self.misses += 1
                CACHE_LOOKUPS.labels("miss").inc()
                return _report(state, event, "reserved")
            now = datetime.now(UTC)
            if isinstance(last, CacheReserved) and (last.until > now or await self._holder_works_on(state, last, key)):
                until = last.until if last.until > now else now + self.reservation
                await cache_log.add_waiter(
                    CacheWaiter(execution_id=state.execution_id, node=node, round=event.round, at=now)
                )
                if (await cache_log.last())[0] != sequence:
                    continue  # filled or released meanwhile: its waker may have missed this waiter
                self.waits += 1
                await self._recheck_at(state, event, until)
                holder = {"holder_execution": last.execution_id, "holder_node": last.node, "until": until}
                return _report(state, event, "held", **holder)
            reservation = CacheReserved(
                execution_id=state.execution_id, node=node, at=now, until=now + self.reservation
            )
            try:
                await cache_log.append(reservation, expected=sequence)
            except ConflictError:
                continue
            self.misses += 1
            CACHE_LOOKUPS.labels("miss").inc()
            return _report(state, event, "reserved")
        raise ConflictError(f"cache key {key}: its log kept moving during {MAX_RACES} look-up attempts")

    async def _holder_works_on(self, state: Execution, holder: CacheReserved, key: str) -> bool:
        """Whether the node holding the key is still computing it: its execution runs, and the node is queued or
        running (or about to be: its look-up reserved the key). Then its reservation stands past ``until``: the
        lease lasts as long as its holder, however long the task runs or waits for an executor."""
        try:
            subject = subjects.execution_subject(state.project, state.domain, holder.execution_id)
        except ValueError:
            return False
        execution = await self.store.load(subject)
        node = execution.nodes.get(holder.node) if execution is not None and not execution.terminal else None
        return node is not None and node.cache_key == key and node.status in ("cache_lookup", "queued", "running")

    async def fill(self, state: Execution, event: NodeSucceeded) -> None:
        """Store the node's outputs under its key, over its own reservation only (or, when the execution
        overwrites the cache, over any record older than its result), then wake the look-ups that waited."""
        node = state.nodes[event.node]
        task = state.workflow.tasks[node.task]
        cache_log = CacheLog(self.js, state.project, state.domain, node.cache_key)
        filled = CacheFilled(
            project=state.project,
            domain=state.domain,
            cache_key=node.cache_key,
            task_name=task.name,
            task_version=task.version,
            outputs=event.outputs,
            execution_id=state.execution_id,
            node=node.id,
            attempt_id=event.attempt_id,
            at=datetime.now(UTC),
        )
        for _ in range(MAX_RACES):
            sequence, last = await cache_log.last()
            if isinstance(last, CacheFilled) and last.attempt_id == event.attempt_id:
                return  # filled before; whoever did it woke the waiters (and they recheck at expiry anyway)
            if not _may_fill(state, node.id, last):
                log.info("cache_fill_skipped", execution=state.execution_id, node=node.id, key=node.cache_key)
                return
            try:
                await cache_log.append(filled, expected=sequence, msg_id=f"fill/{event.attempt_id}")
            except ConflictError:
                continue
            await self._wake(
                state,
                cache_log,
                sequence,
                "hit",
                outputs=event.outputs,
                source_execution=state.execution_id,
                source_node=node.id,
            )
            return
        raise ConflictError(f"cache key {node.cache_key}: its log kept moving during {MAX_RACES} fill attempts")

    async def release(self, state: Execution, node_id: str, reason: str) -> None:
        """Give up the node's reservation, if it holds one, and wake its waiters to look up again."""
        cache_log = CacheLog(self.js, state.project, state.domain, state.nodes[node_id].cache_key)
        for _ in range(MAX_RACES):
            sequence, last = await cache_log.last()
            if not reserved_by(last, state.execution_id, node_id):
                return
            released = CacheReleased(execution_id=state.execution_id, node=node_id, reason=reason, at=datetime.now(UTC))
            try:
                await cache_log.append(released, expected=sequence)
            except ConflictError:
                continue
            await self._wake(state, cache_log, sequence, "released")
            return

    async def _wake(
        self, state: Execution, cache_log: CacheLog, reservation: int, outcome: CacheOutcome, **found: Any
    ) -> None:
        """Tell each look-up that waited on the reservation at sequence ``reservation`` what became of it."""
        for waiter in await cache_log.waiters(after=reservation):
            command = lookup_report(waiter.execution_id, waiter.node, cache_log.key, waiter.round, outcome, **found)
            await publish_command(self.js, command, state.project, state.domain)

    async def _ask_catalog(self, project: str, domain: str, keys: list[str]) -> dict[str, CacheLookupReply]:
        """The catalog's entries for the keys it has; none for those it could not answer in time."""
        entries: dict[str, CacheLookupReply] = {}
        unique = sorted(set(keys))
        for start in range(0, len(unique), MAX_KEYS_PER_LOOKUP):
            request = CacheLookupManyRequest(
                project=project, domain=domain, cache_keys=unique[start : start + MAX_KEYS_PER_LOOKUP]
            )
            try:
                reply = await self.nc.request(
                    subjects.catalog_subject(project, domain, subjects.CATALOG_CACHE_LOOKUP_MANY),
                    _encoder.encode(request),
                    timeout=self.lookup_timeout,
                )
                answer = _reply_decoder.decode(reply.data)
            except (nats.errors.NoRespondersError, nats.errors.TimeoutError, msgspec.DecodeError) as exc:
                log.debug("cache_catalog_unanswered", keys=len(request.cache_keys), error=type(exc).__name__)
                continue
            entries.update((key, entry) for key, entry in answer.entries.items() if entry.outputs is not None)
        return entries

    async def _recheck_at(self, state: Execution, event: NodeCacheLookup, until: datetime) -> None:
        """A timer: if the holder has neither filled nor released the key by ``until``, look up again."""
        command = lookup_report(
            state.execution_id, event.node, event.cache_key, event.round, "released", reason="expired"
        )
        timer = "cache-" + content_version(event.node)[:16]
        await schedule_command(self.js, command, state.project, state.domain, timer, until)
