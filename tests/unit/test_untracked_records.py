"""Decisions, their events and attempt states are not tracked by the cyclic garbage collector (msgspec ``gc=False``):
they hold no reference cycles, and a replay or a busy scheduler makes millions of them."""

from __future__ import annotations

import gc
import typing
from datetime import UTC, datetime

import msgspec

from plait import codec
from plait.core.events import AttemptFailed, Decision, Event, NodeQueued, TaskError
from plait.core.state import AttemptState


def test_every_event_type_the_decision_and_attempt_states_are_untracked() -> None:
    untracked = [*typing.get_args(Event), Decision, TaskError, AttemptState]
    assert len(untracked) > 20
    assert [cls.__name__ for cls in untracked if cls.__struct_config__.gc] == []


def test_a_decoded_decision_is_untracked_while_the_values_it_holds_still_are() -> None:
    decision = Decision(
        execution_id="e",
        at=datetime.now(UTC),
        replica="r",
        commands=("c",),
        previous="",
        events=(
            NodeQueued(node="n", task="t", queue="q", attempt_id="e/n/1", attempt=1, inputs={"x": [1, 2]}),
            AttemptFailed(node="n", attempt_id="e/n/1", error=TaskError(kind="user", message="m")),
        ),
    )
    decoded = codec.decision_decoder.decode(codec.encode(decision))
    assert decoded == decision
    queued, failed = decoded.events
    assert isinstance(queued, NodeQueued) and isinstance(failed, AttemptFailed)
    assert not any(gc.is_tracked(o) for o in (decoded, queued, failed, failed.error))
    assert gc.is_tracked(queued.inputs)  # a cycle through a value would still be found
    assert msgspec.structs.replace(queued, attempt=2).attempt == 2
