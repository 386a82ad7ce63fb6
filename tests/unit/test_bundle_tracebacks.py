"""A task's traceback names the files of its code bundle by their path in the project, whatever cache folder the
executor (or pod) unpacked it into; other paths are left as they are."""

from __future__ import annotations

from plait.core.events import TaskError
from plait_executor.attempt import AttemptOutcome
from plait_executor.code_roots import traceback_in_bundle

ROOT = "/tmp/plait-code-abc/0123abcd"
TRACEBACK = (
    "Traceback (most recent call last):\n"
    f'  File "{ROOT}/0/pkg/steps.py", line 7, in refuse\n'
    f'  File "{ROOT}/1/helpers.py", line 2, in check\n'
    '  File "/usr/lib/python3.11/json/__init__.py", line 346, in loads\n'
    "ValueError: no 4\n"
)


def _failed(traceback: str) -> AttemptOutcome:
    return AttemptOutcome(error=TaskError(kind="user", message="no 4", error_type="ValueError", traceback=traceback))


def test_the_bundles_files_are_named_as_in_the_project() -> None:
    error = traceback_in_bundle(_failed(TRACEBACK), ROOT).error
    assert error is not None
    assert error.traceback == (
        "Traceback (most recent call last):\n"
        '  File "pkg/steps.py", line 7, in refuse\n'
        '  File "helpers.py", line 2, in check\n'
        '  File "/usr/lib/python3.11/json/__init__.py", line 346, in loads\n'
        "ValueError: no 4\n"
    )


def test_without_a_bundle_or_an_error_the_outcome_is_unchanged() -> None:
    failed = _failed(TRACEBACK)
    assert traceback_in_bundle(failed, None) is failed
    succeeded = AttemptOutcome(outputs={"o0": 1})
    assert traceback_in_bundle(succeeded, ROOT) is succeeded
