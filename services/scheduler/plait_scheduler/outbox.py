"""The outbox: tails decisions and publishes the dispatch records of the attempts they queued that are still queued.

A decision's attempts for one queue go out together, in chunks (``plait.core.dispatch.chunk_queued``): one message
per chunk. A dispatch is derived from a stored decision, so it can never exist without one; the durable
consumer's position only moves once the dispatches are stored, so no decision loses its dispatch.
``Nats-Msg-Id`` = project, domain and the chunk's id (its decision, queue and place; a lone attempt's: its attempt
id), the same on every replica, makes a chunk republished within the duplicate window a no-op; past it, the
execution's current state decides: an attempt that started or ended, or whose execution ended, is not dispatched
again (a recreated consumer replays the whole log), and a chunk is republished with its still-queued attempts only.

The replica that appended a decision also publishes its dispatches at once (``publish_decided``), so an
attempt does not wait for the decision to travel through the outbox's consumer; the outbox then skips the
dispatches this replica already has stored, and stays the guarantee for the others (a crash between the
append and the publish, or another replica's decisions).

A decision's side work (cache look-ups, fills and releases: ``plait_scheduler.caching``; retry timers, attempt
deadlines (from an attempt's start) and timeouts: ``plait_scheduler.timers``; the signed checkpoint of the chain head:
``plait.adapters.checkpoints``) follows the same pattern, and is also derived from the current state: the deciding
replica starts it at once, in the background, and the outbox does it for decisions whose side work this replica has
not finished (a decision that fails its side work is handed back to the outbox's consumer, and done again).
The outbox can meet a decision before its replica has started that work (the append's acknowledgement and the
decision's delivery race): a decision this replica is still making for the same execution is waited for first.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

import nats.errors
import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import PubAck

from plait import codec
from plait.adapters import checkpoints
from plait.adapters.event_log import EventLog
from plait.adapters.quarantine import decode_or_quarantine
from plait.core.commands import DEFAULT_ATTEMPT_DEADLINE_SECONDS
from plait.core.dispatch import DISPATCH_CHUNK_ATTEMPTS, DISPATCH_LEAST_CHUNKS, Chunk, chunk_queued, record_of
from plait.core.events import Decision, Event, NodeQueued
from plait.core.state import Execution
from plait.protocol import signing, subjects
from plait.protocol.headers import NATS_MSG_ID
from plait.protocol.quarantine import OUTBOX_READER
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
        chunk_attempts: int = DISPATCH_CHUNK_ATTEMPTS,
        least_chunks: int = DISPATCH_LEAST_CHUNKS,
    ) -> None:
        self.js, self.store, self.states, self.cluster, self.keeper = js, store, states, cluster, keeper
        self.chunk_attempts, self.least_chunks = chunk_attempts, least_chunks
        self.timers = RetryTimers(js)
        self.deadlines = AttemptDeadlines(js, attempt_deadline_seconds)
        self.timeouts = Timeouts(js)
        self.children = ChildWork(js)
        self._side_work: DoneHere[int] = DoneHere("side_work_left_to_outbox", "decision_sequence")
        self._dispatches: DoneHere[str] = DoneHere("dispatch_left_to_outbox", "attempt")
        self._deciding: dict[str, asyncio.Future[None]] = {}  # by execution subject: a decision under way here
        self.dispatched = 0
        self.states_read = 0  # executions' states the outbox had to read from the log

    async def _dispatch(
        self, state: Execution, chunk: Chunk, events: Sequence[NodeQueued], decision_sequence: int
    ) -> asyncio.Future[PubAck]:
        """Publish the dispatch message of ``events`` (the chunk's attempts, or those of them still queued) under the
        chunk's id; the future resolves when JetStream has stored it."""
        record = record_of(state, events, decision_sequence)
        with dispatch_span(state, events):
            # Pipelined: the future resolves when the dispatch is stored (no task, no timer per publish).
            subject = subjects.dispatch_subject(chunk.cluster, chunk.queue)
            data = codec.encode(record)
            message_id = chunk.message_id(state.execution_id, decision_sequence)
            headers = inject({NATS_MSG_ID: subjects.scoped_id(state.project, state.domain, message_id)})
            stored: asyncio.Future[PubAck] = await self.js.publish_async(
                subject, data, headers=headers | signing.sign_headers(subject, data), stream=subjects.DISPATCH_STREAM
            )
        return stored

    def _chunks(self, events: Sequence[Event]) -> list[Chunk]:
        queued = [e for e in events if isinstance(e, NodeQueued)]
        if not queued:
            return []
        return chunk_queued(queued, self.cluster, self.chunk_attempts, least_chunks=self.least_chunks)

    @contextlib.contextmanager
    def deciding(self, subject: str) -> Iterator[None]:
        """While a decision for ``subject`` is made here, until its dispatches and side work are started (or it
        failed): the outbox waits for it before it judges whether a decision of that execution was handled here."""
        under_way: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._deciding[subject] = under_way
        try:
            yield
        finally:
            under_way.set_result(None)
            if self._deciding.get(subject) is under_way:
                del self._deciding[subject]

    async def after_deciding_here(self, subject: str) -> None:
        """Once no decision for ``subject`` is under way on this replica (at once when none is)."""
        under_way = self._deciding.get(subject)
        if under_way is not None:
            await asyncio.wait([under_way])

    async def publish_decided(self, state: Execution, events: Sequence[Event]) -> None:
        """Publish the dispatches of a decision this replica has just appended, and start its cache work;
        on failure the outbox will do either."""
        decision_sequence = state.last_sequence
        checkpoint = checkpoints.wants(state, events)
        if checkpoint or self._wants_side_work(state, events):
            work = asyncio.ensure_future(self._do_side_work(state, events, datetime.now(UTC), checkpoint=checkpoint))
            self._side_work.track(decision_sequence, work)
        else:
            # Found to be nothing from the state right after the decision, the earliest state the outbox could
            # judge it from (what side work wants only shrinks as an execution goes on): the outbox need not read
            # the state again to find that out.
            self._side_work.done(decision_sequence)
        chunks = self._chunks(events)
        if not chunks:
            return
        publishes: dict[asyncio.Future[PubAck], int] = {}  # each publish, with its number of attempts
        subject = subjects.execution_subject(state.project, state.domain, state.execution_id)
        for chunk in chunks:
            publish = await self._dispatch(state, chunk, chunk.events, decision_sequence)
            for event in chunk.events:
                self._dispatches.track(_dispatch_key(subject, event.attempt_id), publish)
            publishes[publish] = len(chunk.events)
        _, unacknowledged = await asyncio.wait(publishes, timeout=DISPATCH_ACK_SECONDS)
        for publish in unacknowledged:
            publish.cancel()  # left to the outbox
        self.dispatched += sum(attempts for publish, attempts in publishes.items() if publish not in unacknowledged)

    def _wants_side_work(self, state: Execution, events: Sequence[Event]) -> bool:
        return (
            (self.keeper is not None and self.keeper.wants(state, events))
            or self.timers.wants(events)
            or self.deadlines.wants(state, events)
            or self.timeouts.wants(state, events)
            or self.children.wants(state, events)
        )

    async def _do_side_work(
        self, state: Execution, events: Sequence[Event], decided_at: datetime, *, checkpoint: bool
    ) -> None:
        if self.keeper is not None and self.keeper.wants(state, events):
            await self.keeper.after_decision(state, events)
        await self.timers.after_decision(state, events, decided_at)
        await self.deadlines.after_decision(state, events)
        await self.timeouts.after_decision(state, events)
        if self.children.wants(state, events):
            await self.children.after_decision(state, events)
        if checkpoint:  # last: a checkpoint stream that is away holds up none of the work above
            await checkpoints.publish_checkpoint(self.js, state)

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
        checkpoint = checkpoints.ends(events)  # of the state after it: nothing is decided after an end
        might = (
            checkpoint
            or (self.keeper is not None and may_need_cache_work(events))
            or self.timers.wants(events)
            or may_time_out(events)  # and an attempt's deadline, set when it starts
            or may_need_child_work(events)
        )
        if not might or await self._side_work.claim(decision_sequence):
            return
        state = await self._state_after(subject, decision_sequence, loaded)
        if state is not None and (checkpoint or self._wants_side_work(state, events)):
            await self._do_side_work(state, events, decision.at, checkpoint=checkpoint)

    async def handle(self, messages: list[Msg]) -> None:
        """Publish the dispatches of these decision messages (pipelined), then ack them. A decision whose side work
        or dispatches could not be done (NATS away, a stream without a leader) is handed back, to be done again."""
        pending: dict[asyncio.Future[PubAck], tuple[int, int]] = {}  # each publish: its decision's sequence, attempts
        failed: set[int] = set()
        loaded: dict[str, Execution | None] = {}  # states read from the log for this batch, by subject
        for msg in messages:
            decision = await decode_or_quarantine(self.js, OUTBOX_READER, msg, codec.decision_decoder.decode)
            if decision is None:  # quarantined: acked below, so that the outbox goes on past it
                continue
            sequence = msg.metadata.sequence.stream
            await self.after_deciding_here(msg.subject)
            try:
                await self._catch_up_side_work(msg.subject, decision, sequence, loaded)
            except Exception:
                log.exception("side_work_failed", decision_sequence=sequence)
                failed.add(sequence)
            try:
                for publish, attempts in await self._dispatch_still_queued(msg.subject, decision, sequence, loaded):
                    pending[publish] = (sequence, attempts)
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
    ) -> list[tuple[asyncio.Future[PubAck], int]]:
        """Publish each chunk of the attempts the decision queued that this replica has not stored already, with those
        of its attempts that are still queued; each publish with its number of attempts."""
        chunks = []
        for chunk in self._chunks(decision.events):
            # Each attempt is claimed (and so forgotten); a chunk stored here was stored whole.
            stored_here = [await self._dispatches.claim(_dispatch_key(subject, e.attempt_id)) for e in chunk.events]
            if not all(stored_here):
                chunks.append(chunk)
        if not chunks:  # none, or this replica stored them right after deciding
            return []
        state = await self._state_after(subject, sequence, loaded)
        publishes = []
        for chunk in chunks:
            still = [event for event in chunk.events if state is not None and still_queued(state, event)]
            for event in chunk.events:
                if event not in still:
                    log.info("dispatch_not_needed", execution=decision.execution_id, attempt=event.attempt_id)
            if state is not None and still:
                publishes.append((await self._dispatch(state, chunk, still, sequence), len(still)))
        return publishes

    async def _unstored(self, pending: dict[asyncio.Future[PubAck], tuple[int, int]]) -> set[int]:
        """Wait until the publishes are stored; the sequences of the decisions whose dispatches were not."""
        if not pending:
            return set()
        try:
            done, not_done = await asyncio.wait(pending, timeout=DISPATCH_ACK_SECONDS)
        finally:
            for publish in pending:
                publish.cancel()  # no-op for those done
        unstored = {pending[publish][0] for publish in not_done}
        for publish in done:
            sequence, attempts = pending[publish]
            if publish.exception() is not None:
                log.warning("dispatch_not_stored", decision_sequence=sequence, error=repr(publish.exception()))
                unstored.add(sequence)
            else:
                self.dispatched += attempts
        return unstored


def _dispatch_key(execution_subject: str, attempt_id: str) -> str:
    """What a dispatch is tracked by: its attempt id within its execution's project and domain (the same attempt
    id names another attempt in another project)."""
    return f"{execution_subject}/{attempt_id}"
