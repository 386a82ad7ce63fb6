"""The reference to an attempt's output, put on the event that ends the attempt."""

from __future__ import annotations

import msgspec

from plait.core.events import AttemptFailed, Event, MapItemSucceeded, NodeSucceeded
from plait.core.task_output import OutputRef


def with_output(events: list[Event], attempt_id: str, output: OutputRef | None) -> list[Event]:
    """``events`` with ``output`` set on the one that ends attempt ``attempt_id`` (failed, or succeeded as a node
    or a map item); unchanged when the attempt wrote nothing."""
    if output is None:
        return events
    return [
        msgspec.structs.replace(event, output=output)
        if isinstance(event, AttemptFailed | NodeSucceeded | MapItemSucceeded) and event.attempt_id == attempt_id
        else event
        for event in events
    ]
