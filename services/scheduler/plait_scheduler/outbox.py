"""The outbox: tails decisions and publishes a dispatch record for every queued attempt.

A dispatch is derived from a stored decision, so it can never exist without one; the durable
consumer's position only moves once the dispatches are stored, so no decision loses its dispatch.
``Nats-Msg-Id`` = attempt id makes a republished dispatch a no-op.

The replica that appended a decision also publishes its dispatches at once (``publish_decided``), so an
attempt does not wait for the decision to travel through the outbox's consumer; the outbox then skips the
dispatches this replica already has stored, and stays the guarantee for the others (a crash between the
append and the publish, or another replica's decisions).

A decision's side work (cache look-ups, fills and releases: ``plait_scheduler.caching``; retry timers:
``plait_scheduler.timers``) follows the same pattern: the deciding replica starts it at once, in the
background, and the outbox does it for decisions whose side work this replica has not finished.
"""

from __future__ import annotations

import asyncio
import functools
from collections import OrderedDict
from collections.abc import Sequence
from datetime import UTC, datetime

import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from plait import codec
from plait.adapters import subjects
from plait.adapters.jetstream import EventStore
from plait.core.dispatch import Dispatch
from plait.core.events import Decision, Event, ExecutionLaunched, NodeQueued
from plait.core.model import WorkflowSpec
from plait.core.state import Execution
from plait_scheduler.cache import StateCache
from plait_scheduler.caching import CacheKeeper, needs_cache_work
from plait_scheduler.timers import RetryTimers

log = structlog.get_logger()

_REMEMBERED = 100_000  # attempt ids whose dispatch this replica stored and the outbox has not met yet


class Outbox:
    def __init__(
        self,
        js: JetStreamContext,
        store: EventStore,
        states: StateCache,
        cluster: str,
        keeper: CacheKeeper | None = None,
    ) -> None:
        self.js, self.store, self.states, self.cluster, self.keeper = js, store, states, cluster, keeper
        self.timers = RetryTimers(js)
        self._side_work: dict[int, asyncio.Future[None]] = {}  # decision sequence -> its side work under way
        self._side_done: OrderedDict[int, None] = OrderedDict()
        self._workflows: OrderedDict[str, tuple[str, str, WorkflowSpec]] = OrderedDict()
        self.dispatched = 0
        self._stored: OrderedDict[str, None] = OrderedDict()
        self._sending: dict[str, asyncio.Future[object]] = {}  # attempt id -> its dispatch's publish

    def _dispatch(
        self,
        execution_id: str,
        project: str,
        domain: str,
        workflow: WorkflowSpec,
        event: NodeQueued,
        decision_sequence: int,
    ) -> asyncio.Future[object]:
        dispatch = Dispatch(
            execution_id=execution_id,
            project=project,
            domain=domain,
            node=event.node,
            attempt_id=event.attempt_id,
            attempt=event.attempt,
            task=workflow.tasks[event.task],
            inputs=event.inputs,
            decision_sequence=decision_sequence,
        )
        return asyncio.ensure_future(
            self.js.publish(
                subjects.dispatch_subject(self.cluster, event.queue),
                codec.encode(dispatch),
                headers={"Nats-Msg-Id": event.attempt_id},
                stream=subjects.DISPATCH_STREAM,
            )
        )

    async def publish_decided(self, state: Execution, events: Sequence[Event]) -> None:
        """Publish the dispatches of a decision this replica has just appended, and start its cache work;
        on failure the outbox will do either."""
        decision_sequence = state.last_sequence
        if self._wants_side_work(events):
            work = asyncio.ensure_future(self._do_side_work(state, events, datetime.now(UTC)))
            work.add_done_callback(functools.partial(self._side_worked, decision_sequence))
            self._side_work[decision_sequence] = work
        queued = [e for e in events if isinstance(e, NodeQueued)]
        if not queued:
            return
        publishes: list[asyncio.Future[object]] = []
        for event in queued:
            publish = self._dispatch(
                state.execution_id, state.project, state.domain, state.workflow, event, decision_sequence
            )
            # Registered first, so it runs before the outbox, waiting for the same publish, looks again.
            publish.add_done_callback(functools.partial(self._sent, event.attempt_id))
            self._sending[event.attempt_id] = publish
            publishes.append(publish)
        await asyncio.wait(publishes)
        self.dispatched += len(queued)

    def _sent(self, attempt_id: str, publish: asyncio.Future[object]) -> None:
        self._sending.pop(attempt_id, None)
        if publish.cancelled() or publish.exception() is not None:
            error = "cancelled" if publish.cancelled() else repr(publish.exception())
            log.warning("dispatch_left_to_outbox", attempt=attempt_id, error=error)
            return
        self._stored[attempt_id] = None
        while len(self._stored) > _REMEMBERED:
            self._stored.popitem(last=False)

    def _wants_side_work(self, events: Sequence[Event]) -> bool:
        return (self.keeper is not None and needs_cache_work(events)) or self.timers.wants(events)

    async def _do_side_work(self, state: Execution, events: Sequence[Event], decided_at: datetime) -> None:
        if self.keeper is not None and needs_cache_work(events):
            await self.keeper.after_decision(state, events)
        await self.timers.after_decision(state, events, decided_at)

    def _side_worked(self, decision_sequence: int, work: asyncio.Future[None]) -> None:
        self._side_work.pop(decision_sequence, None)
        if work.cancelled() or work.exception() is not None:
            error = "cancelled" if work.cancelled() else repr(work.exception())
            log.warning("side_work_left_to_outbox", decision_sequence=decision_sequence, error=error)
            return
        self._side_done[decision_sequence] = None
        while len(self._side_done) > _REMEMBERED:
            self._side_done.popitem(last=False)

    async def _side_work_done(self, decision_sequence: int) -> bool:
        """True when this replica has done the decision's side work (waiting for it if under way)."""
        work = self._side_work.get(decision_sequence)
        if work is not None:
            await asyncio.wait([work])
        if decision_sequence in self._side_done:
            del self._side_done[decision_sequence]
            return True
        return False

    async def _state_after(self, subject: str, decision_sequence: int) -> Execution | None:
        """The execution's state as of the decision at ``decision_sequence`` or later."""
        cached = self.states.get(subject)
        if cached is not None and cached.last_sequence >= decision_sequence:
            return cached
        return await self.store.load(subject)

    async def _catch_up_side_work(self, subject: str, decision: Decision, decision_sequence: int) -> None:
        if not self._wants_side_work(decision.events) or await self._side_work_done(decision_sequence):
            return
        state = await self._state_after(subject, decision_sequence)
        if state is not None:
            await self._do_side_work(state, decision.events, decision.at)

    async def _already_stored(self, attempt_id: str) -> bool:
        """True when this replica has stored the attempt's dispatch (waiting for its publish if under way)."""
        sending = self._sending.get(attempt_id)
        if sending is not None:
            await asyncio.wait([sending])  # its done callback, run first, has recorded how it went
        if attempt_id in self._stored:
            del self._stored[attempt_id]
            return True
        return False

    async def _workflow_of(self, subject: str) -> tuple[str, str, WorkflowSpec]:
        known = self._workflows.get(subject)
        if known is not None:
            return known
        state = self.states.get(subject)
        if state is not None:
            found = (state.project, state.domain, state.workflow)
        else:
            async for stored in self.store.read(subject):
                launched = next(e for e in stored.decision.events if isinstance(e, ExecutionLaunched))
                found = (launched.project, launched.domain, launched.workflow)
                break
        self._workflows[subject] = found
        while len(self._workflows) > 10_000:
            self._workflows.popitem(last=False)
        return found

    async def handle(self, messages: list[Msg]) -> None:
        """Publish the dispatches of these decision messages (pipelined), then ack them."""
        publishes: list[asyncio.Future[object]] = []
        failed: set[int] = set()
        for msg in messages:
            decision = codec.decision_decoder.decode(msg.data)
            for event in decision.events:
                if isinstance(event, ExecutionLaunched):
                    self._workflows[msg.subject] = (event.project, event.domain, event.workflow)
            try:
                await self._catch_up_side_work(msg.subject, decision, msg.metadata.sequence.stream)
            except Exception:
                log.exception("side_work_failed", decision_sequence=msg.metadata.sequence.stream)
                failed.add(msg.metadata.sequence.stream)
            queued = [e for e in decision.events if isinstance(e, NodeQueued)]
            if not queued:
                continue
            queued = [e for e in queued if not await self._already_stored(e.attempt_id)]
            if not queued:  # this replica stored them right after deciding
                continue
            project, domain, workflow = await self._workflow_of(msg.subject)
            for event in queued:
                publishes.append(
                    self._dispatch(
                        decision.execution_id,
                        project,
                        domain,
                        workflow,
                        event,
                        msg.metadata.sequence.stream,
                    )
                )
        await asyncio.gather(*publishes)
        self.dispatched += len(publishes)
        for msg in messages:
            if msg.metadata.sequence.stream in failed:
                await msg.nak(delay=1.0)
            else:
                await msg.ack()
