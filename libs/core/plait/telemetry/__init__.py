"""OpenTelemetry traces: one trace per execution, carried in message headers (W3C ``traceparent``).

Everything here is a no-op when ``opentelemetry`` is not installed; without an exporter configured
(``OTEL_TRACES_EXPORTER`` = ``console`` or ``otlp``, or ``PLAIT_TRACES_FILE``) spans are not recorded,
but a context received is still passed on, so a process with tracing off does not break the trace.
"""

from plait.telemetry.context import (
    TRACEPARENT,
    current_ids,
    current_traceparent,
    inject,
    minted_traceparent,
    span,
    trace_id_of,
    traceparent_of,
)
from plait.telemetry.logs import add_trace_ids
from plait.telemetry.setup import configure_tracing, flush, tracing_enabled

__all__ = [
    "TRACEPARENT",
    "add_trace_ids",
    "configure_tracing",
    "current_ids",
    "current_traceparent",
    "flush",
    "inject",
    "minted_traceparent",
    "span",
    "trace_id_of",
    "traceparent_of",
    "tracing_enabled",
]
