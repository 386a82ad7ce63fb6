"""Task output without servers: the reference goes from an attempt's result to the event that ends the attempt,
capture catches every way of writing and puts everything back, and long output keeps its head and tail."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import tempfile
from datetime import UTC, datetime

from plait import map_task, task, workflow
from plait.core.commands import ReportAttemptResult
from plait.core.decide import decide_batch
from plait.core.events import AttemptFailed, MapItemSucceeded, NodeQueued, NodeSucceeded, TaskError
from plait.core.task_output import TAIL_CHARACTERS, OutputRef, last_lines, output_object_name
from plait.invariants import check_execution
from plait.sdk.signatures import SINGLE_OUTPUT
from plait_executor.capture import bounded, captured_into
from tests.helpers.launching import launched
from tests.helpers.records import history

AT = datetime(2026, 1, 2, tzinfo=UTC)
REF = OutputRef(name="output-e/n/1", size=10, kept=10)


@task
def double(x: int) -> int:
    return 2 * x


@workflow
def plain(x: int) -> int:
    return double(x)


@workflow
def mapped(xs: list[int]) -> list[int]:
    return map_task(double)(x=xs)


def result(queued: NodeQueued, output: OutputRef | None, error: TaskError | None = None) -> ReportAttemptResult:
    return ReportAttemptResult(
        command_id=f"result-{queued.attempt_id}",
        execution_id="e",
        node=queued.node,
        attempt_id=queued.attempt_id,
        worker="w",
        outputs=None if error else {SINGLE_OUTPUT: 2},
        error=error,
        output=output,
    )


def test_the_event_ending_an_attempt_carries_its_outputs_reference() -> None:
    for wf, inputs, ending in ((plain, {"x": 1}, NodeSucceeded), (mapped, {"xs": [1]}, MapItemSucceeded)):
        state, events = launched(wf, inputs, AT)
        queued = next(e for e in events if isinstance(e, NodeQueued))
        new = decide_batch(state, [result(queued, REF)], AT).events
        [ended] = [e for e in new if isinstance(e, ending) and e.attempt_id == queued.attempt_id]
        assert ended.output == REF
        assert all(getattr(e, "output", None) is None for e in new if e is not ended)


def test_a_failed_attempt_carries_its_reference_and_one_that_wrote_nothing_none() -> None:
    state, events = launched(plain, {"x": 1}, AT)
    queued = next(e for e in events if isinstance(e, NodeQueued))
    failed = decide_batch(state, [result(queued, REF, TaskError(kind="user", message="boom"))], AT).events
    assert [e.output for e in failed if isinstance(e, AttemptFailed)] == [REF]
    state, events = launched(plain, {"x": 1}, AT)
    queued = next(e for e in events if isinstance(e, NodeQueued))
    succeeded = decide_batch(state, [result(queued, None)], AT).events
    assert [e.output for e in succeeded if isinstance(e, NodeSucceeded)] == [None]


def test_capture_catches_print_stderr_logging_fds_and_subprocesses_and_puts_everything_back() -> None:
    before = os.fstat(1).st_ino, os.fstat(2).st_ino
    stdout, stderr, root_level, handlers = sys.stdout, sys.stderr, logging.getLogger().level, logging.root.handlers[:]
    with tempfile.TemporaryFile() as sink:
        with captured_into(sink):
            print("printed")
            print("to stderr", file=sys.stderr)
            logging.getLogger("unit").info("logged")
            os.write(1, b"at fd 1\n")
            subprocess.run([sys.executable, "-c", "print('from a subprocess')"], check=True)
            sys.stdout = io.StringIO()  # a task replacing sys.stdout does not outlive its attempt
        sink.seek(0)
        lines = sink.read().decode().splitlines()
    assert (os.fstat(1).st_ino, os.fstat(2).st_ino) == before
    assert (sys.stdout, sys.stderr) == (stdout, stderr)
    assert (logging.getLogger().level, logging.root.handlers) == (root_level, handlers)
    assert lines[:2] == ["printed", "to stderr"]
    assert lines[2].endswith("INFO unit: logged")
    assert lines[3:] == ["at fd 1", "from a subprocess"]


def test_long_output_keeps_its_head_and_tail_and_says_what_was_cut() -> None:
    sink = io.BytesIO(b"a" * 100 + b"b" * 1000 + b"c" * 50)
    kept, size = bounded(sink, 100, 50)
    assert size == 1150
    assert kept == b"a" * 100 + b"\n[plait: 1,000 bytes cut here; kept the first 100 and the last 50]\n" + b"c" * 50
    assert bounded(io.BytesIO(b"short"), 100, 50) == (b"short", 5)
    assert bounded(io.BytesIO(b""), 100, 50) == (b"", 0)


class _Trickling(io.BytesIO):
    """A file whose reads return at most 7 bytes, as an unbuffered file's may return less than asked."""

    def read(self, size: int | None = -1) -> bytes:
        return super().read(7 if size is None or size < 0 else min(size, 7))


def test_output_read_in_pieces_is_kept_whole() -> None:
    data = b"a" * 100 + b"b" * 1000 + b"c" * 50
    assert bounded(_Trickling(data), 100, 50) == bounded(io.BytesIO(data), 100, 50)
    assert bounded(_Trickling(b"short output"), 100, 50) == (b"short output", 12)


def test_the_tail_in_an_error_is_the_last_lines_and_bounded() -> None:
    text = "".join(f"line {n}\n" for n in range(100))
    assert last_lines(text) == "\n".join(f"line {n}" for n in range(80, 100))
    assert len(last_lines("x" * 10_000_000)) == TAIL_CHARACTERS


def test_an_attempts_end_naming_another_attempts_output_breaks_an_invariant() -> None:
    state, events = launched(plain, {"x": 1}, AT)
    queued = next(e for e in events if isinstance(e, NodeQueued))
    own = OutputRef(name=output_object_name(queued.attempt_id), size=1, kept=1)
    good = decide_batch(state, [result(queued, own)], AT).events
    assert check_execution(history("e", [events, good]), ended=True) == []
    state, events = launched(plain, {"x": 1}, AT)
    forged = decide_batch(state, [result(queued, REF)], AT).events
    assert [p.kind for p in check_execution(history("e", [events, forged]))] == ["foreign_output"]
