"""Decisions of the pure core as a scheduler would store them, and states rebuilt from them, for comparing runs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from plait.core.decide import Outcome
from plait.core.events import Decision
from plait.core.state import Execution, apply_decision


def decision_of(outcome: Outcome, at: datetime) -> Decision:
    """The record a scheduler appends for a decided batch."""
    execution_id = outcome.state.execution_id if outcome.state else ""
    return Decision(
        execution_id=execution_id,
        at=at,
        replica="test",
        commands=tuple(outcome.command_ids),
        previous="",
        events=tuple(outcome.events),
    )


def without_bookkeeping(state: Execution | None) -> dict[str, Any]:
    """The state as builtins, less the fields that only the append sets (stream sequence, digest, count)."""
    builtins = msgspec.to_builtins(state)
    for field in ("last_sequence", "last_digest", "decisions"):
        del builtins[field]
    return builtins  # type: ignore[no-any-return]


def replay(decisions: list[Decision]) -> Execution | None:
    """Rebuild a state from decisions as stored: encoded to JSON and decoded again."""
    state: Execution | None = None
    for sequence, decision in enumerate(decisions, start=1):
        stored = msgspec.json.decode(msgspec.json.encode(decision), type=Decision)
        state = apply_decision(state, stored, sequence, f"digest-{sequence}")
    return state
