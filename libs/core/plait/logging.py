"""structlog, configured once per process: JSON lines for services, a console renderer for people."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TextIO

import structlog

from plait.telemetry import add_trace_ids


def configure_logging(log_format: str = "json", level: str = "info", file: Path | None = None) -> None:
    """Render to stderr, or append to ``file`` (as JSON) when given, e.g. while a live view owns the terminal."""
    stream: TextIO = sys.stderr
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        stream = open(file, "a", buffering=1)  # noqa: SIM115 - lives as long as the process logs
        log_format = "json"
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if log_format == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            add_trace_ids,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        # One write per line (``print`` makes two): processes whose stderr is appended to one file (the
        # embedded stack's services) would otherwise run their lines into each other.
        logger_factory=structlog.WriteLoggerFactory(stream),
        cache_logger_on_first_use=True,
    )
