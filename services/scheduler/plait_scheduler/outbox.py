"""The outbox: tails decisions and publishes a dispatch record for every queued attempt.

A dispatch is derived from a stored decision, so it can never exist without one; the durable
consumer's position only moves once the dispatches are stored, so no decision loses its dispatch.
``Nats-Msg-Id`` = project, domain and attempt id makes a republished dispatch a no-op.

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
from collections import OrderedDict
from collections.abc import Sequence
from datetime import UTC, datetime

import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import PubAck

from plait import codec
from plait.adapters import subjects
from plait.adapters.jetstream import EventStore
from plait.adapters.quarantine import OUTBOX_READER, decode_or_quarantine
from plait.core.dispatch import Dispatch
from plait.core.events import Decision, Event, ExecutionLaunched, NodeQueued
from plait.core.model import WorkflowSpec
from plait.core.state import Execution
from plait_scheduler.cache import StateCache
from plait_scheduler.caching import CacheKeeper, may_need_cache_work
from plait_scheduler.done_here import DoneHere
from plait_scheduler.timers import RetryTimers

log = structlog.get_logger()

DISPATCH_ACK_SECONDS = 5.0  # how long a dispatch's storing is awaited before it is left to the outbox


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
        self._side_work: DoneHere[int] = DoneHere("side_work_left_to_outbox", "decision_sequence")
        self._dispatches: DoneHere[str] = DoneHere("dispatch_left_to_outbox", "attempt")
        self._workflows: OrderedDict[str, tuple[str, str, WorkflowSpec]] = OrderedDict()
        self.dispatched = 0

    async def _dispatch(
        self,
        execution_id: str,
        project: str,
        domain: str,
        workflow: WorkflowSpec,
        event: NodeQueued,
        decision_sequence: int,
    ) -> asyncio.Future[PubAck]:
        """Publish the attempt's dispatch; the future resolves when JetStream has stored it."""
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
        # Pipelined: the future resolves when the dispatch is stored (no task, no timer per publish).
        stored: asyncio.Future[PubAck] = await self.js.publish_async(
            subjects.dispatch_subject(self.cluster, event.queue),
            codec.encode(dispatch),
            headers={"Nats-Msg-Id": subjects.scoped_id(project, domain, event.attempt_id)},
            stream=subjects.DISPATCH_STREAM,
        )
        return stored

    async def publish_decided(self, state: Execution, events: Sequence[Event]) -> None:
        """Publish the dispatches of a decision this replica has just appended, and start its cache work;
        on failure the outbox will do either."""
        decision_sequence = state.last_sequence
        if self._wants_side_work(state, events):
            work = asyncio.ensure_future(self._do_side_work(state, events, datetime.now(UTC)))
            self._side_work.track(decision_sequence, work)
        queued = [e for e in events if isinstance(e, NodeQueued)]
        if not queued:
            return
        publishes: list[asyncio.Future[PubAck]] = []
        for event in queued:
            publish = await self._dispatch(
                state.execution_id, state.project, state.domain, state.workflow, event, decision_sequence
            )
            subject = subjects.execution_subject(state.project, state.domain, state.execution_id)
            self._dispatches.track(_dispatch_key(subject, event.attempt_id), publish)
            publishes.append(publish)
        _, unacknowledged = await asyncio.wait(publishes, timeout=DISPATCH_ACK_SECONDS)
        for publish in unacknowledged:
            publish.cancel()  # left to the outbox
        self.dispatched += len(queued) - len(unacknowledged)

    def _wants_side_work(self, state: Execution, events: Sequence[Event]) -> bool:
        return (self.keeper is not None and self.keeper.wants(state, events)) or self.timers.wants(events)

    async def _do_side_work(self, state: Execution, events: Sequence[Event], decided_at: datetime) -> None:
        if self.keeper is not None and self.keeper.wants(state, events):
            await self.keeper.after_decision(state, events)
        await self.timers.after_decision(state, events, decided_at)

    async def _state_after(self, subject: str, decision_sequence: int) -> Execution | None:
        """The execution's state as of the decision at ``decision_sequence`` or later."""
        cached = self.states.get(subject)
        if cached is not None and cached.last_sequence >= decision_sequence:
            return cached
        return await self.store.load(subject, at_least=decision_sequence)

    async def _catch_up_side_work(self, subject: str, decision: Decision, decision_sequence: int) -> None:
        events = decision.events
        might = (self.keeper is not None and may_need_cache_work(events)) or self.timers.wants(events)
        if not might or await self._side_work.claim(decision_sequence):
            return
        state = await self._state_after(subject, decision_sequence)
        if state is not None and self._wants_side_work(state, events):
            await self._do_side_work(state, events, decision.at)

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
        publishes: list[asyncio.Future[PubAck]] = []
        failed: set[int] = set()
        for msg in messages:
            decision = await decode_or_quarantine(self.js, OUTBOX_READER, msg, codec.decision_decoder.decode)
            if decision is None:  # quarantined: acked below, so that the outbox goes on past it
                continue
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
            queued = [e for e in queued if not await self._dispatches.claim(_dispatch_key(msg.subject, e.attempt_id))]
            if not queued:  # this replica stored them right after deciding
                continue
            project, domain, workflow = await self._workflow_of(msg.subject)
            for event in queued:
                publishes.append(
                    await self._dispatch(
                        decision.execution_id,
                        project,
                        domain,
                        workflow,
                        event,
                        msg.metadata.sequence.stream,
                    )
                )
        try:
            await asyncio.wait_for(asyncio.gather(*publishes), DISPATCH_ACK_SECONDS)
        except BaseException:
            for publish in publishes:
                publish.cancel()
            raise
        self.dispatched += len(publishes)
        for msg in messages:
            if msg.metadata.sequence.stream in failed:
                await msg.nak(delay=1.0)
            else:
                await msg.ack()


def _dispatch_key(execution_subject: str, attempt_id: str) -> str:
    """What a dispatch is tracked by: its attempt id within its execution's project and domain (the same attempt
    id names another attempt in another project)."""
    return f"{execution_subject}/{attempt_id}"
