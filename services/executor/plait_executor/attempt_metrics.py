"""The executor's metrics of attempts: how long a ready node waited for its attempt to start, and how long each
attempt ran, by task and outcome."""

from __future__ import annotations

from datetime import UTC, datetime

from nats.aio.msg import Msg

from plait.metrics.names import ATTEMPT_DURATION, READY_TO_START
from plait.protocol import subjects


def observe_start(msg: Msg) -> None:
    """The wait of the attempt a dispatch message names: from when the dispatch was stored (its node became ready)
    to now, when a worker starts it."""
    parts = msg.subject.split(".")
    if len(parts) != 4 or f"{parts[0]}.{parts[1]}" != subjects.DISPATCH_ROOT:
        return
    waited = (datetime.now(UTC) - msg.metadata.timestamp).total_seconds()
    READY_TO_START.labels(parts[2], parts[3]).observe(max(0.0, waited))


def observe_attempt(task: str, error_kind: str | None, seconds: float) -> None:
    """One attempt's run time; ``error_kind`` is None when it succeeded, else "user" or "system"."""
    outcome = "succeeded" if error_kind is None else f"failed_{error_kind}"
    ATTEMPT_DURATION.labels(task, outcome).observe(seconds)
