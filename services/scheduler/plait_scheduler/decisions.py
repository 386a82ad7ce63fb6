"""Deciding for one execution: load its state, decide a batch of commands, append all or nothing."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import structlog

from plait import codec
from plait.adapters.event_log import DecisionTooLarge, EventLog
from plait.adapters.object_store import ValueStore
from plait.core.commands import Command, ResolvedLaunch, each_command
from plait.core.decide import Outcome, decide_batch, decide_unstorable, gathered_values
from plait.core.events import Decision
from plait.core.shared_values import share_repeated
from plait.core.state import Execution, count_stored
from plait.errors import ConflictError, PlaitError
from plait.metrics.names import CONFLICTS, DECISIONS
from plait_scheduler.cache import StateCache

log = structlog.get_logger()

MAX_CONFLICT_RETRIES = 50
SHARE_ABOVE_BYTES = 64 * 1024
"""A decision this large is looked through for values it repeats (a value passed to several tasks): smaller ones
are stored as they are, so the usual decision costs no second encoding."""
READ_BACK_BRACKETS = 900
"""A decision with fewer opening brackets than this cannot nest deeply enough for a reader's decoder to refuse it
(msgspec stops at 1,000 levels); one with more is decoded once before it is appended."""


class UnreadableDecision(PlaitError):
    """A decision nests too deeply for its readers to decode: appending it would break every reader of the log."""


def encode_readable(decision: Decision) -> bytes:
    """The decision's bytes, with the values it repeats stored once when it is large; ``UnreadableDecision`` when
    they could not be made, or not be read back by the readers' decoder."""
    try:
        data = codec.encode(decision)
        if len(data) > SHARE_ABOVE_BYTES and (shared := share_repeated(decision)) is not decision:
            data = codec.encode(shared)
        if data.count(b"[") + data.count(b"{") >= READ_BACK_BRACKETS:
            codec.decision_decoder.decode(data)
    except RecursionError as exc:
        raise UnreadableDecision("the decision nests too deeply to be stored and read back") from exc
    return data


class Decider:
    """Turns commands into appended decisions, retrying on fresh state when another replica got there first.

    The state is decided on outside the cache and put back only once its decision is stored: after any failed
    append (a conflict, a timeout, a full stream, a lost leader) the next decision starts from the log. A map node's
    gathered output too large for an event is stored in the values bucket (``values``) before the decision that
    refers to it is appended.
    """

    def __init__(self, event_log: EventLog, cache: StateCache, replica: str, values: ValueStore | None = None) -> None:
        self.event_log, self.cache, self.replica, self.values = event_log, cache, replica, values
        self.decisions = 0
        self.conflicts = 0

    async def decide(self, subject: str, commands: Sequence[Command | ResolvedLaunch]) -> Outcome:
        """Decide ``commands`` for the execution on ``subject`` and append the result; returns the outcome.

        A decision that cannot be stored (too large, or too deeply nested to be read back) is decided again one
        command at a time; a single command whose decision still cannot be stored fails its node and execution with
        the reason (or, for a launch, is rejected).
        """
        for tries in range(MAX_CONFLICT_RETRIES):
            cached = self.cache.take(subject)
            # A launch's subject is new, as the append checks (expected sequence 0): its log is read only once the
            # append conflicts, or before its refusal (a launch of an execution that exists refuses nothing).
            assumed_new = cached is None and tries == 0 and all(isinstance(c, ResolvedLaunch) for c in commands)
            state = cached if cached is not None or assumed_new else await self.event_log.load(subject)
            expected = state.last_sequence if state else 0
            previous = state.last_digest if state else ""
            now = datetime.now(UTC)
            outcome = decide_batch(state, commands, now)
            if not outcome.events:
                if assumed_new or (cached is not None and await self._caught_up(subject, cached)):
                    continue  # another replica decided meanwhile: what changes nothing here may change something now
                self._keep(subject, outcome.state)
                return outcome
            try:
                return await self._append(subject, outcome, expected, previous, now)
            except ConflictError:
                self.conflicts += 1
                CONFLICTS.inc()
                log.debug("decision_conflict", subject=subject, expected=expected)
            except (DecisionTooLarge, UnreadableDecision) as exc:
                if assumed_new:  # refused before any check that the subject is new: decide again on what it holds
                    continue
                return await self._unstorable(subject, commands, outcome, exc)
        raise ConflictError(f"{subject}: still conflicting after {MAX_CONFLICT_RETRIES} attempts")

    async def _append(self, subject: str, outcome: Outcome, expected: int, previous: str, now: datetime) -> Outcome:
        state = outcome.state
        assert state is not None  # events were decided, so the execution exists (or was just launched)  # noqa: S101  an invariant of this code, not a check of input
        decision = Decision(
            execution_id=state.execution_id,
            at=now,
            replica=self.replica,
            commands=tuple(outcome.command_ids),
            previous=previous,
            events=tuple(outcome.events),
        )
        data = encode_readable(decision)
        await self._store_gathered(state, outcome)
        state.last_sequence, state.last_digest = await self.event_log.append_encoded(subject, data, expected)
        state.decisions += 1
        count_stored(state, outcome.events, len(data))
        self.decisions += 1
        DECISIONS.inc()
        self._keep(subject, state)
        return outcome

    async def _store_gathered(self, state: Execution, outcome: Outcome) -> None:
        for ref, encoding in gathered_values(state, outcome.events):
            if self.values is None:
                raise PlaitError(f"a map node's output ({ref.size:,} bytes) must be stored: no values bucket is set")
            await self.values.put_encoded(ref, encoding)

    async def _caught_up(self, subject: str, cached: Execution) -> bool:
        """Whether the log moved past the cached state; if so the cache now holds the state caught up with it.

        A decision with events is checked by OCC when it is appended; one without events is not, so before a command
        is acked as changing nothing, the state it was decided on is checked against the log."""
        seen = cached.last_sequence
        state = await self.event_log.load(subject, cached)
        if state is None or state.last_sequence == seen:
            return False
        self._keep(subject, state)
        return True

    def _keep(self, subject: str, state: Execution | None) -> None:
        if state is not None:
            self.cache.put(subject, state)

    async def _unstorable(
        self,
        subject: str,
        commands: Sequence[Command | ResolvedLaunch],
        outcome: Outcome,
        exc: DecisionTooLarge | UnreadableDecision,
    ) -> Outcome:
        units = list(each_command(commands))
        if len(units) > 1:
            return _merged([await self.decide(subject, [unit]) for unit in units])
        [command] = units
        reason = (
            f"{exc}: a value is too large to be passed on this way" if isinstance(exc, DecisionTooLarge) else str(exc)
        )
        log.warning("decision_unstorable", subject=subject, reason=str(exc))
        for _ in range(MAX_CONFLICT_RETRIES):
            state = await self.event_log.load(subject)
            if state is None:  # a launch: nothing is stored, the sender is told why
                return Outcome(state=None, events=[], command_ids=[], rejections=[(command, reason)])
            expected, previous, now = state.last_sequence, state.last_digest, datetime.now(UTC)
            failure = decide_unstorable(state, command, outcome.events, reason, now)
            if not failure.events:
                return failure
            try:
                return await self._append(subject, failure, expected, previous, now)
            except ConflictError:
                self.conflicts += 1
                CONFLICTS.inc()
        raise ConflictError(f"{subject}: still conflicting after {MAX_CONFLICT_RETRIES} attempts")


def _merged(outcomes: list[Outcome]) -> Outcome:
    """Several outcomes of one execution, decided one after another, as one."""
    return Outcome(
        state=outcomes[-1].state,
        events=[event for outcome in outcomes for event in outcome.events],
        command_ids=[command_id for outcome in outcomes for command_id in outcome.command_ids],
        rejections=[rejection for outcome in outcomes for rejection in outcome.rejections],
    )
