"""Configuring the process's tracer provider from the standard ``OTEL_*`` variables (and ``PLAIT_TRACES_FILE``)."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import structlog

from plait.errors import InputError

TRACES_FILE = "PLAIT_TRACES_FILE"
"""A path: every finished span is appended to it as one JSON line (several processes may share it)."""
EXPORTERS = ("none", "console", "otlp")

_configured: Any = None  # the TracerProvider this process set up, if any


def tracing_enabled() -> bool:
    """Whether this process records spans (``configure_tracing`` found an exporter to send them to)."""
    return _configured is not None


def configure_tracing(service: str) -> bool:
    """Set up tracing for this process, named ``service`` (``OTEL_SERVICE_NAME`` wins), once; returns whether spans
    are recorded. Off unless ``OTEL_TRACES_EXPORTER`` names ``console`` or ``otlp`` or ``PLAIT_TRACES_FILE`` is set,
    and always off without ``opentelemetry-sdk`` or with ``OTEL_SDK_DISABLED=true``."""
    global _configured
    if _configured is not None:
        return True
    names = [n.strip() for n in os.environ.get("OTEL_TRACES_EXPORTER", "none").lower().split(",") if n.strip()]
    path = os.environ.get(TRACES_FILE, "")
    unknown = [n for n in names if n not in EXPORTERS]
    if unknown:
        raise InputError(f"OTEL_TRACES_EXPORTER: unknown exporter {unknown[0]!r} (known: {', '.join(EXPORTERS)})")
    wanted = [n for n in names if n != "none"]
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true" or not (wanted or path):
        return False
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor
    except ImportError:
        structlog.get_logger().warning("tracing_unavailable", reason="opentelemetry-sdk is not installed")
        return False
    from plait.telemetry.file_exporter import FileSpanExporter

    provider = TracerProvider(resource=Resource.create({"service.name": service, "plait.process": service}))
    if path:
        provider.add_span_processor(SimpleSpanProcessor(FileSpanExporter(path)))
    if "console" in wanted:
        # stderr: stdout is a command's answer (``plait run`` prints the result there)
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stderr)))
    if "otlp" in wanted:
        provider.add_span_processor(BatchSpanProcessor(_otlp_exporter()))
    trace.set_tracer_provider(provider)
    _configured = provider
    return True


def flush() -> None:
    """Send the spans still buffered (a worker process may be killed before it exits)."""
    if _configured is not None:
        _configured.force_flush()


def _otlp_exporter() -> Any:
    """OTLP over the protocol ``OTEL_EXPORTER_OTLP_PROTOCOL`` names (``http/protobuf`` by default), configured by the
    other ``OTEL_EXPORTER_OTLP_*`` variables; needs the ``otlp`` extra."""
    protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
    )
    module = f"opentelemetry.exporter.otlp.proto.{'grpc' if protocol == 'grpc' else 'http'}.trace_exporter"
    try:
        exporter = importlib.import_module(module).OTLPSpanExporter
    except ImportError:
        raise InputError(
            f"OTEL_TRACES_EXPORTER=otlp ({protocol}) needs the OTLP exporter: pip install 'plait[otlp]'"
        ) from None
    return exporter()
