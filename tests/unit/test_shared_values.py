"""Values several events of one decision pass on are stored once, and every reader sees the events whole."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from plait import codec
from plait.core.events import Decision, NodeQueued, NodeSucceeded, SharedValue
from plait.core.shared_values import share_repeated

LARGE = "x" * 5000


def decision_passing(value: str, readers: int) -> Decision:
    """A node's output ``value`` and ``readers`` nodes queued to read it, in one decision."""
    queued = [
        NodeQueued(node=f"r{i}", attempt_id=f"e/r{i}/1", attempt=1, task="read", queue="q", inputs={"text": value})
        for i in range(readers)
    ]
    return Decision(
        execution_id="e",
        at=datetime(2026, 1, 1, tzinfo=UTC),
        replica="r",
        commands=("c",),
        previous="",
        events=(NodeSucceeded(node="p", attempt_id="e/p/1", outputs={"result": value}), *queued),
    )


def test_a_value_read_by_eight_nodes_is_stored_once_and_read_back_whole() -> None:
    original = decision_passing(LARGE, 8)
    shared = share_repeated(original)
    data = codec.encode(shared)
    assert len(data) < 2 * len(LARGE) < len(codec.encode(original)) / 4
    assert codec.decision_decoder.decode(data) == original


def test_small_or_unrepeated_values_are_left_in_place() -> None:
    small = decision_passing("x" * 100, 8)
    assert share_repeated(small) is small
    single = decision_passing(LARGE, 0)
    assert share_repeated(single) is single


@pytest.mark.parametrize("place", [(99, "inputs", "text"), (1, "error", "text"), (1, "inputs", "other")])
def test_a_shared_value_naming_no_place_does_not_decode(place: tuple[int, str, str]) -> None:
    """A record whose shared places name no event's mapping is refused like any malformed record (the outbox and
    the catalog then set it aside), not raised as an IndexError."""
    forged = msgspec.structs.replace(decision_passing("", 2), shared=(SharedValue(value=LARGE, at=(place,)),))
    with pytest.raises(msgspec.DecodeError):
        codec.decision_decoder.decode(codec.encode(forged))
