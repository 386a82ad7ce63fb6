"""Capturing what an attempt writes: its stdout and stderr at the file descriptors (so output of C extensions and
of subprocesses is caught too) and its Python logging, into a temporary file, of which the start and the end are
kept. A warm worker process runs many attempts in turn: everything redirected is put back after each one.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import sys
import tempfile
from collections.abc import Iterator, Mapping
from typing import IO, Any

import msgspec

from plait.core.model import TaskTarget
from plait.core.task_output import DEFAULT_OUTPUT_HEAD_BYTES, DEFAULT_OUTPUT_TAIL_BYTES
from plait_executor.attempt import AttemptOutcome, run_attempt

OutputLimits = tuple[int, int]
"""Bytes kept from the start and from the end of an attempt's output."""
DEFAULT_OUTPUT_LIMITS: OutputLimits = (DEFAULT_OUTPUT_HEAD_BYTES, DEFAULT_OUTPUT_TAIL_BYTES)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def run_captured(
    target: TaskTarget, inputs: Mapping[str, Any], version: str | None, limits: OutputLimits = DEFAULT_OUTPUT_LIMITS
) -> AttemptOutcome:
    """``run_attempt``, with what it wrote (bounded by ``limits``) in the outcome's ``output``."""
    with tempfile.TemporaryFile(prefix="plait-output-") as sink:
        with captured_into(sink):
            outcome = run_attempt(target, inputs, version)
        kept, size = bounded(sink, *limits)
    return msgspec.structs.replace(outcome, output=kept, output_size=size)


@contextlib.contextmanager
def captured_into(sink: IO[bytes]) -> Iterator[None]:
    """File descriptors 1 and 2 go to ``sink`` (both: the order of lines across them is kept), and the root
    logger, when nothing else handles its records, writes INFO and above there too; all put back on exit."""
    _flush()
    saved_fds = os.dup(1), os.dup(2)
    saved_streams = sys.stdout, sys.stderr
    line_buffered = [_line_buffered(stream) for stream in saved_streams]
    root = logging.getLogger()
    handler: logging.Handler | None = None
    level = root.level
    if not root.handlers:  # else the process's own handlers write to stderr, which is captured
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root.addHandler(handler)
        if root.level > logging.INFO or root.level == logging.NOTSET:
            root.setLevel(logging.INFO)
    os.dup2(sink.fileno(), 1)
    os.dup2(sink.fileno(), 2)
    try:
        yield
    finally:
        _flush()
        sys.stdout, sys.stderr = saved_streams
        _flush()
        os.dup2(saved_fds[0], 1)
        os.dup2(saved_fds[1], 2)
        for fd in saved_fds:
            os.close(fd)
        for stream, was in zip(saved_streams, line_buffered, strict=True):
            if was is not None:
                stream.reconfigure(line_buffering=was)  # type: ignore[union-attr]
        if handler is not None:
            root.removeHandler(handler)
            root.setLevel(level)


def bounded(sink: IO[bytes], head: int, tail: int) -> tuple[bytes, int]:
    """What ``sink`` holds when at most ``head + tail`` bytes, else its first ``head`` and last ``tail`` bytes
    with a line between them saying how much was cut; and its size."""
    size = sink.seek(0, os.SEEK_END)
    sink.seek(0)
    if size <= head + tail:
        return sink.read(), size
    first = sink.read(head)
    sink.seek(size - tail)
    last = sink.read(tail)
    marker = f"\n[plait: {size - head - tail:,} bytes cut here; kept the first {head:,} and the last {tail:,}]\n"
    return first + marker.encode() + last, size


def _line_buffered(stream: Any) -> bool | None:
    """Make ``stream`` line-buffered, so that its lines interleave with stderr's as written; what it was."""
    if stream is None or not hasattr(stream, "reconfigure") or not hasattr(stream, "line_buffering"):
        return None
    was: bool = stream.line_buffering
    stream.reconfigure(line_buffering=True)
    return was


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.flush()
    with contextlib.suppress(Exception):
        _libc().fflush(None)  # C stdio buffers (a C extension's printf)


_LIBC: ctypes.CDLL | None = None


def _libc() -> ctypes.CDLL:
    global _LIBC
    if _LIBC is None:
        _LIBC = ctypes.CDLL(None)
    return _LIBC
