"""Capturing what an attempt writes: its stdout and stderr at the file descriptors (so output of C extensions and
of subprocesses is caught too) and its Python logging, into a temporary file, of which the start and the end are
kept. A warm worker process runs many attempts in turn: everything redirected is put back after each one.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import logging
import os
import sys
import tempfile
from collections.abc import Iterator, Mapping
from typing import IO, Any

import msgspec

from plait.core.model import TaskTarget
from plait.core.task_output import DEFAULT_OUTPUT_HEAD_BYTES, DEFAULT_OUTPUT_TAIL_BYTES
from plait.sdk import secrets
from plait_executor.attempt import AttemptOutcome, run_attempt

OutputLimits = tuple[int, int]
"""Bytes kept from the start and from the end of an attempt's output."""
DEFAULT_OUTPUT_LIMITS: OutputLimits = (DEFAULT_OUTPUT_HEAD_BYTES, DEFAULT_OUTPUT_TAIL_BYTES)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_FORMATTER = logging.Formatter(LOG_FORMAT)


def run_captured(
    target: TaskTarget,
    inputs: Mapping[str, Any],
    version: str | None,
    limits: OutputLimits = DEFAULT_OUTPUT_LIMITS,
    secret_values: Mapping[str, str] | None = None,
    live_path: str | None = None,
) -> AttemptOutcome:
    """``run_attempt``, with what it wrote (bounded by ``limits``, its secrets redacted) in the outcome's ``output``.
    ``live_path``: the file to write it to, which the executor reads while the attempt runs (redacting the secrets
    it knows, see ``plait_executor.live_output``) and removes; else a temporary file."""
    # Unbuffered: only the descriptor is written to, and a buffered file's set-up costs three system calls more.
    if live_path is None:
        sink_file: IO[bytes] = tempfile.TemporaryFile(prefix="plait-output-", buffering=0)  # noqa: SIM115
    else:
        sink_file = open(live_path, "w+b", buffering=0)  # noqa: SIM115
    with sink_file as sink, secrets.attempt_scope() as resolved:
        with captured_into(sink):
            outcome = run_attempt(target, inputs, version, secret_values)
        kept, size = bounded(sink, *limits)
        kept = secrets.redact_bytes(kept, resolved.values())
    return msgspec.structs.replace(outcome, output=kept, output_size=size)


@contextlib.contextmanager
def captured_into(sink: IO[bytes]) -> Iterator[None]:
    """File descriptors 1 and 2 go to ``sink`` (both: the order of lines across them is kept), and the root
    logger, unless one of its handlers writes to them already, writes INFO and above there too; all put back on
    exit."""
    _flush()
    saved_fds = os.dup(1), os.dup(2)
    saved_streams = sys.stdout, sys.stderr
    root = logging.getLogger()
    handler: logging.Handler | None = None
    level = root.level
    if not any(_writes_to_captured(other) for other in root.handlers):
        handler = logging.StreamHandler(_line_stream(2))
        handler.setFormatter(_FORMATTER)
        root.addHandler(handler)
        if level > logging.INFO or level == logging.NOTSET:
            root.setLevel(logging.INFO)  # clears every logger's cache: a worker sets INFO once instead
    os.dup2(sink.fileno(), 1)
    os.dup2(sink.fileno(), 2)
    # Python's streams write to the descriptors, line by line (whatever they were: pytest's, a notebook's, None).
    sys.stdout, sys.stderr = _line_stream(1), _line_stream(2)
    try:
        yield
    finally:
        _flush()
        sys.stdout, sys.stderr = saved_streams
        os.dup2(saved_fds[0], 1)
        os.dup2(saved_fds[1], 2)
        for fd in saved_fds:
            os.close(fd)
        if handler is not None:
            root.removeHandler(handler)
        if root.level != level:
            root.setLevel(level)


def bounded(sink: IO[bytes], head: int, tail: int) -> tuple[bytes, int]:
    """What ``sink`` holds when at most ``head + tail`` bytes, else its first ``head`` and last ``tail`` bytes
    with a line between them saying how much was cut; and its size."""
    size = sink.seek(0, os.SEEK_END)
    if size == 0:  # most attempts write nothing: no read back
        return b"", 0
    if size <= head + tail:
        return _read_at(sink, 0, size), size
    marker = f"\n[plait: {size - head - tail:,} bytes cut here; kept the first {head:,} and the last {tail:,}]\n"
    return _read_at(sink, 0, head) + marker.encode() + _read_at(sink, size - tail, tail), size


def _read_at(sink: IO[bytes], offset: int, count: int) -> bytes:
    """``count`` bytes of ``sink`` from ``offset`` (fewer at its end), also from an unbuffered file, whose reads may
    return less than asked."""
    sink.seek(offset)
    parts = []
    while count > 0 and (part := sink.read(count)):
        parts.append(part)
        count -= len(part)
    return b"".join(parts)


def _writes_to_captured(handler: logging.Handler) -> bool:
    """Whether ``handler`` writes to file descriptor 1 or 2 (a handler the process set up on stderr)."""
    stream = getattr(handler, "stream", None)
    try:
        return stream is not None and stream.fileno() in (1, 2)
    except (OSError, ValueError, AttributeError):  # io.UnsupportedOperation is an OSError and a ValueError
        return False


_LINE_STREAMS: dict[int, io.TextIOWrapper] = {}


def _line_stream(fd: int) -> io.TextIOWrapper:
    """A text stream writing each line to ``fd`` as it is written (leaving ``fd`` open when it is closed); one per
    descriptor, made anew only when an attempt closed it."""
    stream = _LINE_STREAMS.get(fd)
    if stream is None or stream.closed:
        stream = _LINE_STREAMS[fd] = io.TextIOWrapper(
            io.FileIO(fd, "w", closefd=False), encoding="utf-8", errors="backslashreplace", line_buffering=True
        )
    return stream


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
