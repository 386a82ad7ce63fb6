"""Deciding for one execution: load its state, decide a batch of commands, append all or nothing."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import structlog

from plait.adapters.jetstream import EventStore
from plait.core.commands import Command
from plait.core.decide import Outcome, ResolvedLaunch, decide_batch
from plait.core.events import Decision
from plait.errors import ConflictError
from plait_scheduler.cache import StateCache

log = structlog.get_logger()

MAX_CONFLICT_RETRIES = 50


class Decider:
    """Turns commands into appended decisions, retrying on fresh state when another replica got there first."""

    def __init__(self, store: EventStore, cache: StateCache, replica: str) -> None:
        self.store, self.cache, self.replica = store, cache, replica
        self.decisions = 0
        self.conflicts = 0

    async def decide(self, subject: str, commands: Sequence[Command | ResolvedLaunch]) -> Outcome:
        """Decide ``commands`` for the execution on ``subject`` and append the result; returns the outcome."""
        for _ in range(MAX_CONFLICT_RETRIES):
            state = self.cache.get(subject)
            if state is None:
                state = await self.store.load(subject)
            expected = state.last_sequence if state else 0
            previous = state.last_digest if state else ""
            now = datetime.now(UTC)
            outcome = decide_batch(state, commands, now)
            if not outcome.events:
                if outcome.state is not None:
                    self.cache.put(subject, outcome.state)
                return outcome
            assert outcome.state is not None
            decision = Decision(
                execution_id=outcome.state.execution_id,
                at=now,
                replica=self.replica,
                commands=tuple(outcome.command_ids),
                previous=previous,
                events=tuple(outcome.events),
            )
            try:
                sequence, digest = await self.store.append(subject, decision, expected)
            except ConflictError:
                self.conflicts += 1
                self.cache.drop(subject)  # the cached state was changed by the failed decision
                log.debug("decision_conflict", subject=subject, expected=expected)
                continue
            outcome.state.last_sequence, outcome.state.last_digest = sequence, digest
            outcome.state.decisions += 1
            self.decisions += 1
            if outcome.state.terminal:
                self.cache.drop(subject)
            else:
                self.cache.put(subject, outcome.state)
            return outcome
        raise ConflictError(f"{subject}: still conflicting after {MAX_CONFLICT_RETRIES} attempts")
