"""The catalog's spans: projecting a batch of decisions, in the trace of each execution it holds decisions of (as
the context their messages carry says)."""

from __future__ import annotations

from collections.abc import Iterable

from plait.telemetry import span, tracing_enabled

PROJECT_SPAN = "plait.catalog.project"


def record_projected(traceparents: Iterable[str], first: int, last: int, started_ns: int) -> None:
    """One span per trace context among the batch's decisions, from when the batch began to now."""
    if not tracing_enabled():
        return
    for traceparent in dict.fromkeys(t for t in traceparents if t):
        attributes = {"plait.first_sequence": first, "plait.last_sequence": last}
        with span(PROJECT_SPAN, parent=traceparent, attributes=attributes, start_time=started_ns):
            pass
