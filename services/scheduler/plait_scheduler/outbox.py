"""The outbox: tails decisions and publishes a dispatch record for every attempt they queued that is still queued.

A dispatch is derived from a stored decision, so it can never exist without one; the durable
consumer's position only moves once the dispatches are stored, so no decision loses its dispatch.
``Nats-Msg-Id`` = project, domain and attempt id makes a dispatch republished within the duplicate window a
no-op; past it, the execution's current state decides: an attempt that started or ended, or whose execution
ended, is not dispatched again (a recreated consumer replays the whole log).

The replica that appended a decision also publishes its dispatches at once (``publish_decided``), so an
attempt does not wait for the decision to travel through the outbox's consumer; the outbox then skips the
dispatches this replica already has stored, and stays the guarantee for the others (a crash between the
append and the publish, or another replica's decisions).

A decision's side work (cache look-ups, fills and releases: ``plait_scheduler.caching``; retry timers, attempt
deadlines and timeouts: ``plait_scheduler.timers``) follows the same pattern, and is also derived from the current
state: the deciding replica starts it at once, in the background, and the outbox does it for decisions whose
side work this replica has not finished.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import UTC, datetime

import nats.errors
import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import PubAck

from plait import codec
from plait.adapters import checkpoints
from plait.adapters.event_log import EventLog
from plait.adapters.quarantine import OUTBOX_READER, decode_or_quarantine
from plait.core.commands import DEFAULT_ATTEMPT_DEADLINE_SECONDS
from plait.core.dispatch import dispatch_of
from plait.core.events import TERMINAL_EVENTS, Decision, Event, NodeQueued
from plait.core.state import Execution
from plait.protocol import signing, subjects
from plait.protocol.headers import NATS_MSG_ID
from plait.telemetry import inject
from plait_scheduler.cache import StateCache
from plait_scheduler.caching import CacheKeeper, may_need_cache_work
from plait_scheduler.children import ChildWork, may_need_child_work
from plait_scheduler.done_here import DoneHere
from plait_scheduler.timers import AttemptDeadlines, RetryTimers, Timeouts, may_time_out, still_queued
from plait_scheduler.tracing import dispatch_span

log = structlog.get_logger()

DISPATCH_ACK_SECONDS = 5.0  # how long a dispatch's storing is awaited before it is left to the outbox


class Outbox:
    def __init__(
        self,
        js: JetStreamContext,
        store: EventLog,
        states: StateCache,
        cluster: str,
        keeper: CacheKeeper | None = None,
        attempt_deadline_seconds: float = DEFAULT_ATTEMPT_DEADLINE_SECONDS,
    ) -> None:
        self.js, self.store, self.states, self.cluster, self.keeper = js, store, states, cluster, keeper
        self.timers = RetryTimers(js)
        self.deadlines = AttemptDeadlines(js, attempt_deadline_seconds)
        self.timeouts = Timeouts(js)
        self.children = ChildWork(js)
        self._side_work: DoneHere[int] = DoneHere("side_work_left_to_outbox", "decision_sequence")
        self._dispatches: DoneHere[str] = DoneHere("dispatch_left_to_outbox", "attempt")
        self.dispatched = 0
        self.states_read = 0  # executions' states the outbox had to read from the log

    async def _dispatch(self, state: Execution, event: NodeQueued, decision_sequence: int) -> asyncio.Future[PubAck]:
        """Publish the attempt's dispatch; the future resolves when JetStream has stored it."""
        dispatch = dispatch_of(state, event, decision_sequence)
        with dispatch_span(state, event):
            # Pipelined: the future resolves when the dispatch is stored (no task, no timer per publish).
            subject = subjects.dispatch_subject(event.cluster or self.cluster, event.queue)
            data = codec.encode(dispatch)
            headers = inject({NATS_MSG_ID: subjects.scoped_id(state.project, state.domain, event.attempt_id)})
            stored: asyncio.Future[PubAck] = await self.js.publish_async(
                subject, data, headers=headers | signing.sign_headers(subject, data), stream=subjects.DISPATCH_STREAM
            )
        return stored

    async def publish_decided(self, state: Execution, events: Sequence[Event]) -> None:
        """Publish the dispatches of a decision this replica has just appended, and start its cache work;
        on failure the outbox will do either."""
        decision_sequence = state.last_sequence
        if checkpoints.wants(state, ended=any(isinstance(event, TERMINAL_EVENTS) for event in events)):
            await checkpoints.publish_checkpoint(self.js, state)
        if self._wants_side_work(state, events):
            work = asyncio.ensure_future(self._do_side_work(state, events, datetime.now(UTC)))
            self._side_work.track(decision_sequence, work)
        else:
            # Found to be nothing from the state right after the decision, the earliest state the outbox could
            # judge it from (what side work wants only shrinks as an execution goes on): the outbox need not read
            # the state again to find that out.
            self._side_work.done(decision_sequence)
        queued = [e for e in events if isinstance(e, NodeQueued)]
        if not queued:
            return
        publishes: list[asyncio.Future[PubAck]] = []
        subject = subjects.execution_subject(state.project, state.domain, state.execution_id)
        for event in queued:
            publish = await self._dispatch(state, event, decision_sequence)
            self._dispatches.track(_dispatch_key(subject, event.attempt_id), publish)
            publishes.append(publish)
        _, unacknowledged = await asyncio.wait(publishes, timeout=DISPATCH_ACK_SECONDS)
        for publish in unacknowledged:
            publish.cancel()  # left to the outbox
        self.dispatched += len(queued) - len(unacknowledged)

    def _wants_side_work(self, state: Execution, events: Sequence[Event]) -> bool:
        return (
            (self.keeper is not None and self.keeper.wants(state, events))
            or self.timers.wants(events)
            or self.deadlines.wants(state, events)
            or self.timeouts.wants(state, events)
            or self.children.wants(state, events)
        )

    async def _do_side_work(self, state: Execution, events: Sequence[Event], decided_at: datetime) -> None:
        if self.keeper is not None and self.keeper.wants(state, events):
            await self.keeper.after_decision(state, events)
        await self.timers.after_decision(state, events, decided_at)
        await self.deadlines.after_decision(state, events)
        await self.timeouts.after_decision(state, events)
        if self.children.wants(state, events):
            await self.children.after_decision(state, events)

    async def _state_after(
        self, subject: str, decision_sequence: int, loaded: dict[str, Execution | None]
    ) -> Execution | None:
        """The execution's current state, as of the decision at ``decision_sequence`` or later: this replica's
        cached state if it is that recent, else the one ``loaded`` for this batch, else read from the log.

        A state read from the log is caught up from this replica's cached one (the decisions after it only) and
        cached in its place: the decisions of another replica's executions (all of them when the commands are
        partitioned) then cost the outbox one read of each, not a read of their whole log each time.
        """
        cached = self.states.get(subject)
        if cached is not None and cached.last_sequence >= decision_sequence:
            return cached
        state = loaded.get(subject)
        if state is None or state.last_sequence < decision_sequence:
            self.states_read += 1
            state = await self.store.load(subject, self.states.take(subject), at_least=decision_sequence)
            loaded[subject] = state
            current = self.states.get(subject)  # the decider may have put a newer one back meanwhile
            if state is not None and (current is None or current.last_sequence < state.last_sequence):
                self.states.put(subject, state)
        return state

    async def _catch_up_side_work(
        self, subject: str, decision: Decision, decision_sequence: int, loaded: dict[str, Execution | None]
    ) -> None:
        events = decision.events
        might = (
            (self.keeper is not None and may_need_cache_work(events))
            or self.timers.wants(events)
            or may_time_out(events)
            or may_need_child_work(events)
            or any(isinstance(event, NodeQueued) for event in events)
        )
        if not might or await self._side_work.claim(decision_sequence):
            return
        state = await self._state_after(subject, decision_sequence, loaded)
        if state is not None and self._wants_side_work(state, events):
            await self._do_side_work(state, events, decision.at)

    async def handle(self, messages: list[Msg]) -> None:
        """Publish the dispatches of these decision messages (pipelined), then ack them. A decision whose side work
        or dispatches could not be done (NATS away, a stream without a leader) is handed back, to be done again."""
        pending: dict[asyncio.Future[PubAck], int] = {}  # each publish, with the sequence of its decision
        failed: set[int] = set()
        loaded: dict[str, Execution | None] = {}  # states read from the log for this batch, by subject
        for msg in messages:
            decision = await decode_or_quarantine(self.js, OUTBOX_READER, msg, codec.decision_decoder.decode)
            if decision is None:  # quarantined: acked below, so that the outbox goes on past it
                continue
            sequence = msg.metadata.sequence.stream
            try:
                await self._catch_up_side_work(msg.subject, decision, sequence, loaded)
            except Exception:
                log.exception("side_work_failed", decision_sequence=sequence)
                failed.add(sequence)
            try:
                for publish in await self._dispatch_still_queued(msg.subject, decision, sequence, loaded):
                    pending[publish] = sequence
            except Exception:
                log.exception("dispatch_failed", decision_sequence=sequence)
                failed.add(sequence)
        failed |= await self._unstored(pending)
        for msg in messages:
            with contextlib.suppress(nats.errors.Error):  # else redelivered after the ack wait
                if msg.metadata.sequence.stream in failed:
                    await msg.nak(delay=1.0)
                else:
                    await msg.ack()

    async def _dispatch_still_queued(
        self, subject: str, decision: Decision, sequence: int, loaded: dict[str, Execution | None]
    ) -> list[asyncio.Future[PubAck]]:
        """Publish the dispatch of each attempt the decision queued that this replica has not stored already and
        that is still queued."""
        queued = [e for e in decision.events if isinstance(e, NodeQueued)]
        queued = [e for e in queued if not await self._dispatches.claim(_dispatch_key(subject, e.attempt_id))]
        if not queued:  # none, or this replica stored them right after deciding
            return []
        state = await self._state_after(subject, sequence, loaded)
        publishes = []
        for event in queued:
            if state is None or not still_queued(state, event):
                log.info("dispatch_not_needed", execution=decision.execution_id, attempt=event.attempt_id)
                continue
            publishes.append(await self._dispatch(state, event, sequence))
        return publishes

    async def _unstored(self, pending: dict[asyncio.Future[PubAck], int]) -> set[int]:
        """Wait until the publishes are stored; the sequences of the decisions whose dispatches were not."""
        if not pending:
            return set()
        try:
            done, not_done = await asyncio.wait(pending, timeout=DISPATCH_ACK_SECONDS)
        finally:
            for publish in pending:
                publish.cancel()  # no-op for those done
        unstored = {pending[publish] for publish in not_done}
        for publish in done:
            if publish.exception() is not None:
                log.warning("dispatch_not_stored", decision_sequence=pending[publish], error=repr(publish.exception()))
                unstored.add(pending[publish])
            else:
                self.dispatched += 1
        return unstored


def _dispatch_key(execution_subject: str, attempt_id: str) -> str:
    """What a dispatch is tracked by: its attempt id within its execution's project and domain (the same attempt
    id names another attempt in another project)."""
    return f"{execution_subject}/{attempt_id}"
