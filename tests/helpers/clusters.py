"""The clusters an execution's attempts are queued for, as the pure core decides them."""

from __future__ import annotations

from datetime import UTC, datetime

from plait.core.commands import ReportAttemptResult, ResolvedLaunch
from plait.core.decide import decide_batch
from plait.core.events import NodeQueued

AT = datetime(2026, 1, 2, tzinfo=UTC)


def queued_clusters(resolved: ResolvedLaunch) -> dict[str, str]:
    """The cluster of every attempt the execution queues, by task short name, answering each at once."""
    outcome = decide_batch(None, [resolved], AT)
    assert outcome.state is not None, outcome.rejections
    found: dict[str, str] = {}
    pending = [e for e in outcome.events if isinstance(e, NodeQueued)]
    while pending:
        event = pending.pop()
        found[event.task.rsplit(".", 1)[-1]] = event.cluster
        result = ReportAttemptResult(
            command_id=f"r-{event.attempt_id}",
            execution_id=outcome.state.execution_id,
            node=event.node,
            attempt_id=event.attempt_id,
            worker="w",
            outputs={"result": 1},
        )
        pending += [e for e in decide_batch(outcome.state, [result], AT).events if isinstance(e, NodeQueued)]
    return found
