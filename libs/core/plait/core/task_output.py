"""What an attempt wrote while it ran (its stdout, stderr and Python logging), kept in the logs bucket.

The core only passes the reference on, from an attempt's result to the events that end the attempt: it never
reads what it names.
"""

from __future__ import annotations

import msgspec

DEFAULT_OUTPUT_HEAD_BYTES = 64 * 1024
"""Bytes kept from the start of an attempt's output (``PLAIT_TASK_OUTPUT_HEAD``)."""
DEFAULT_OUTPUT_TAIL_BYTES = 256 * 1024
"""Bytes kept from the end of an attempt's output (``PLAIT_TASK_OUTPUT_TAIL``); what lies between is cut."""
TAIL_LINES = 20
"""Lines of a failed attempt's output that travel inline in its error (``TaskError.output_tail``)."""
TAIL_CHARACTERS = 4096
"""At most this much of those lines travels (a line may be megabytes long): the error is in several events."""


class OutputRef(msgspec.Struct, frozen=True, kw_only=True):
    """An attempt's captured output: the object ``name`` in the logs bucket (``PLAIT_LOGS``), the ``size`` in
    bytes the attempt wrote, and how many of them were ``kept`` (the rest, from the middle, was cut)."""

    name: str
    size: int
    kept: int


def output_object_name(attempt_id: str) -> str:
    """The logs bucket's object of an attempt's output: one per attempt (a re-run of the same attempt replaces it)."""
    return f"output-{attempt_id}"


def last_lines(text: str, count: int = TAIL_LINES) -> str:
    """The last ``count`` lines of ``text``, without its trailing newline, and of them the last
    ``TAIL_CHARACTERS``."""
    return "\n".join(text[-count * TAIL_CHARACTERS :].rstrip("\n").splitlines()[-count:])[-TAIL_CHARACTERS:]
