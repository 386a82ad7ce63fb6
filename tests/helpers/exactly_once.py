"""The exactly-once check of an execution's stored log, shared by the tests that kill scheduler replicas."""

from __future__ import annotations

import itertools
from collections import Counter

from plait.adapters.event_log import StoredDecision
from plait.core.events import NodeQueued, NodeSucceeded


def check_log(events: list[StoredDecision], nodes: int) -> None:
    """Exactly one success per node, no decision or attempt stored twice, and an unbroken hash chain."""
    successes = Counter(e.node for s in events for e in s.decision.events if isinstance(e, NodeSucceeded))
    assert len(successes) == nodes and set(successes.values()) == {1}
    queued = Counter(e.attempt_id for s in events for e in s.decision.events if isinstance(e, NodeQueued))
    assert set(queued.values()) == {1}, "every attempt is queued once"
    assert len({s.digest for s in events}) == len(events), "no decision is appended twice"
    assert events[0].decision.previous == ""
    for before, after in itertools.pairwise(events):
        assert after.decision.previous == before.digest, "the chain has no gap"
        assert after.sequence > before.sequence
