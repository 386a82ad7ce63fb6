"""The cache work a stored decision asks for: look-ups, fills and releases, each ending in a command or a record.

Everything here is idempotent, because a decision's cache work may be done twice (by the replica that
appended it, and by the outbox that tails the log for replicas that crashed): look-ups find the reservation
they took the first time, records and commands carry ids that JetStream deduplicates, and ``decide`` ignores
a report for a look-up round that is over.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import nats.errors
import structlog
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from plait.adapters import subjects
from plait.adapters.cachelog import CacheLog
from plait.adapters.commands import publish_command, schedule_command
from plait.core.cachelog import (
    CacheFilled,
    CacheLookupReply,
    CacheLookupRequest,
    CacheReleased,
    CacheReserved,
    CacheWaiter,
    reserved_by,
)
from plait.core.commands import CacheOutcome, ReportCacheLookup
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
from plait.errors import ConflictError

LOOKUP_SUBJECT = f"{subjects.CATALOG_ROOT}.cache.lookup"
MAX_RACES = 20  # a key's log moved under this look-up this many times in a row: something is very wrong

_reply_decoder = msgspec.json.Decoder(CacheLookupReply)
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


def needs_cache_work(events: Sequence[Event]) -> bool:
    return any(
        isinstance(e, NodeCacheLookup | NodeSucceeded | NodeFailed | ExecutionFailed | ExecutionAborted) for e in events
    )


class CacheKeeper:
    """Does the cache work of decisions. ``reservation_seconds``: how long a reservation stands if its holder
    neither fills nor releases it; ``lookup_timeout``: how long to wait for the catalog before going on
    without it (the key's own log is then the only source)."""

    def __init__(
        self, nc: NATS, js: JetStreamContext, *, reservation_seconds: float = 600.0, lookup_timeout: float = 0.5
    ) -> None:
        self.nc, self.js = nc, js
        self.reservation = timedelta(seconds=reservation_seconds)
        self.lookup_timeout = lookup_timeout
        self.hits = self.misses = self.waits = 0
        self.catalog_hits = 0  # hits the catalog answered (the others came from the key's log)

    async def after_decision(self, state: Execution, events: Sequence[Event]) -> None:
        """The look-ups, fills and releases that ``events`` (just stored for ``state``'s execution) call for."""
        for event in events:
            match event:
                case NodeCacheLookup():
                    await self.lookup(state, event)
                case NodeSucceeded(node=node_id) if state.nodes[node_id].cache_key:
                    await self.fill(state, event)
                case NodeFailed(node=node_id) if state.nodes[node_id].cache_key:
                    await self.release(state, node_id, "its node failed")
                case ExecutionFailed() | ExecutionAborted():
                    for node in state.nodes.values():
                        if node.cache_key and node.status in ("aborted", "failed"):
                            await self.release(state, node.id, f"its execution ended {state.status}")

    async def lookup(self, state: Execution, event: NodeCacheLookup) -> None:
        node, key = event.node, event.cache_key
        entry = await self._ask_catalog(state.project, state.domain, key)
        if entry is not None:
            self.hits += 1
            self.catalog_hits += 1
            await self._report(
                state, event, "hit", outputs=entry.outputs, source_execution=entry.execution_id, source_node=entry.node
            )
            return
        cache_log = CacheLog(self.js, state.project, state.domain, key)
        for _ in range(MAX_RACES):
            sequence, last = await cache_log.last()
            if isinstance(last, CacheFilled):
                self.hits += 1
                await self._report(
                    state, event, "hit", outputs=last.outputs, source_execution=last.execution_id, source_node=last.node
                )
                return
            if reserved_by(last, state.execution_id, node):
                self.misses += 1
                await self._report(state, event, "reserved")
                return
            now = datetime.now(UTC)
            if isinstance(last, CacheReserved) and last.until > now:
                await cache_log.add_waiter(
                    CacheWaiter(execution_id=state.execution_id, node=node, round=event.round, at=now)
                )
                if (await cache_log.last())[0] != sequence:
                    continue  # filled or released meanwhile: its waker may have missed this waiter
                self.waits += 1
                await self._report(
                    state, event, "held", holder_execution=last.execution_id, holder_node=last.node, until=last.until
                )
                await self._recheck_at(state, event, last.until)
                return
            reservation = CacheReserved(
                execution_id=state.execution_id, node=node, at=now, until=now + self.reservation
            )
            try:
                await cache_log.append(reservation, expected=sequence)
            except ConflictError:
                continue
            self.misses += 1
            await self._report(state, event, "reserved")
            return
        raise ConflictError(f"cache key {key}: its log kept moving during {MAX_RACES} look-up attempts")

    async def fill(self, state: Execution, event: NodeSucceeded) -> None:
        """Store the node's outputs under its key, then wake the look-ups that waited for them."""
        node = state.nodes[event.node]
        task = state.workflow.tasks[node.task]
        cache_log = CacheLog(self.js, state.project, state.domain, node.cache_key)
        sequence, last = await cache_log.last()
        if isinstance(last, CacheFilled) and last.attempt_id == event.attempt_id:
            return  # filled before; whoever did it woke the waiters (and they recheck at expiry anyway)
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
        await cache_log.append(filled, msg_id=f"fill/{event.attempt_id}")
        await self._wake(
            state,
            cache_log,
            sequence,
            "hit",
            outputs=event.outputs,
            source_execution=state.execution_id,
            source_node=node.id,
        )

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

    async def _ask_catalog(self, project: str, domain: str, key: str) -> CacheLookupReply | None:
        """The catalog's entry for the key; None when it has none, or did not answer in time."""
        request = msgspec.json.encode(CacheLookupRequest(project=project, domain=domain, cache_key=key))
        try:
            reply = await self.nc.request(LOOKUP_SUBJECT, request, timeout=self.lookup_timeout)
            answer = _reply_decoder.decode(reply.data)
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError, msgspec.DecodeError) as exc:
            log.debug("cache_catalog_unanswered", cache_key=key, error=type(exc).__name__)
            return None
        return answer if answer.found and answer.outputs is not None else None

    async def _report(self, state: Execution, event: NodeCacheLookup, outcome: CacheOutcome, **found: Any) -> None:
        command = lookup_report(state.execution_id, event.node, event.cache_key, event.round, outcome, **found)
        await publish_command(self.js, command, state.project, state.domain)

    async def _recheck_at(self, state: Execution, event: NodeCacheLookup, until: datetime) -> None:
        """A timer: if the holder has neither filled nor released the key by ``until``, look up again."""
        command = lookup_report(
            state.execution_id, event.node, event.cache_key, event.round, "released", reason="expired"
        )
        timer = "cache-" + content_version(event.node)[:16]
        await schedule_command(self.js, command, state.project, state.domain, timer, until)
