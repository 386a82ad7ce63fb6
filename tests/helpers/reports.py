"""Reports an executor would send, for tests of the pure core."""

from __future__ import annotations

from typing import Any

from plait.core.commands import ReportAttemptResult
from plait.core.events import NodeQueued


def result_of(queued: NodeQueued, value: Any, execution_id: str = "e") -> ReportAttemptResult:
    """The report of the queued attempt's success, its single output ``value``."""
    return ReportAttemptResult(
        command_id=f"{queued.attempt_id}:result",
        execution_id=execution_id,
        node=queued.node,
        attempt_id=queued.attempt_id,
        worker="w1",
        outputs={"result": value},
    )
