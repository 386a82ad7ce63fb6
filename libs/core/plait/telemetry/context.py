"""Spans and their context in message headers, through the OpenTelemetry API (no-ops without it)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

try:
    from opentelemetry import propagate, trace
except ImportError:  # the ``tracing`` extra is not installed
    propagate = trace = None  # type: ignore[assignment]

TRACEPARENT = "traceparent"
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
_INSTRUMENTATION = "plait"

Attributes = Mapping[str, str | int | float | bool]


def traceparent_of(headers: Mapping[str, str] | None) -> str:
    """The W3C ``traceparent`` a message's headers carry, if well formed ("" otherwise)."""
    value = (headers or {}).get(TRACEPARENT, "")
    return value if _TRACEPARENT.fullmatch(value) else ""


def trace_id_of(traceparent: str) -> str:
    """The trace id (32 hex digits) of a ``traceparent`` ("" when it is not one)."""
    return traceparent.split("-")[1] if _TRACEPARENT.fullmatch(traceparent) else ""


@contextmanager
def span(
    name: str,
    *,
    parent: str | None = None,
    attributes: Attributes | None = None,
    start_time: int | None = None,
) -> Iterator[None]:
    """A span, current while the block runs: a child of ``parent`` (a ``traceparent``) when one is given, else of
    the current span. Without a tracer provider nothing is recorded, but ``parent`` still becomes the current
    context, so that what this process sends on carries it."""
    if trace is None:
        yield
        return
    context = propagate.extract({TRACEPARENT: parent}) if parent else None
    tracer = trace.get_tracer(_INSTRUMENTATION)
    with tracer.start_as_current_span(name, context=context, attributes=attributes, start_time=start_time):
        yield


def inject(headers: dict[str, str]) -> dict[str, str]:
    """``headers`` with the current span's context added (``traceparent``, and what else the configured
    propagators write), for the message they go with."""
    if propagate is not None:
        propagate.inject(headers)
    return headers


def current_traceparent() -> str:
    """The current span's ``traceparent`` ("" when there is none)."""
    carrier: dict[str, str] = {}
    if propagate is not None and current_ids() is not None:
        propagate.inject(carrier)
    return traceparent_of(carrier)


def current_ids() -> tuple[str, str] | None:
    """The current span's trace id and span id, in hex; None when no span is current."""
    if trace is None:
        return None
    context: Any = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


def minted_traceparent(key: str) -> str:
    """A ``traceparent`` derived from ``key`` (an execution id): the same for every process and every delivery, for an
    execution launched without one."""
    digest = hashlib.blake2b(key.encode(), digest_size=24).hexdigest()
    return f"00-{digest[:32]}-{digest[32:]}-01"
