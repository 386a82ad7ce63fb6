"""A structlog processor adding the current span's ids to each log line."""

from __future__ import annotations

from typing import Any

from structlog.typing import EventDict

from plait.telemetry.context import current_ids


def add_trace_ids(logger: Any, method_name: str, event_dict: EventDict) -> EventDict:
    """Add ``trace_id`` and ``span_id`` when a span is current (and the line does not set them already)."""
    if "trace_id" not in event_dict and (ids := current_ids()) is not None:
        event_dict["trace_id"], event_dict["span_id"] = ids
    return event_dict
