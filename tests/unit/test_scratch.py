"""What a worker's attempt left in its temporary folder is set aside for the executor to remove, the paths its
outputs name in there moved along; an attempt that left nothing is untouched."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from plait_executor.attempt import AttemptOutcome
from plait_executor.scratch import set_aside, temporary_files_in


def test_what_an_attempt_left_is_set_aside_with_its_outputs_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", tempfile.tempdir)  # both put back after the test
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    folder = str(tmp_path / "worker")
    temporary_files_in(folder)
    assert os.environ["TMPDIR"] == folder
    made = Path(tempfile.mkdtemp()) / "report.txt"  # as a task makes it
    made.write_text("rows")
    returned = {"o0": {"$plait": "file", "path": str(made)}, "o1": ["kept", {"$plait": "file", "path": "/elsewhere"}]}
    outcome = set_aside(AttemptOutcome(outputs=returned), folder)
    assert outcome.leftovers is not None and outcome.leftovers != folder
    moved = Path(outcome.outputs["o0"]["path"]) if outcome.outputs else None
    assert moved is not None and moved.read_text() == "rows" and moved.is_relative_to(outcome.leftovers)
    assert outcome.outputs is not None and outcome.outputs["o1"] == ["kept", {"$plait": "file", "path": "/elsewhere"}]
    assert list(Path(folder).iterdir()) == [], "the worker's folder is there again, empty"


def test_an_attempt_that_left_nothing_is_untouched(tmp_path: Path) -> None:
    folder = tmp_path / "worker"
    folder.mkdir()
    outcome = AttemptOutcome(outputs={"o0": 1})
    assert set_aside(outcome, str(folder)) is outcome
    assert set_aside(outcome, None) is outcome
