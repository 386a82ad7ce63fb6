"""What a task's call changes of its worker's working directory, environment and root logger is put back after it, even
when it removed the folder it moved to."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from plait_executor.surroundings import put_back, surroundings


def test_a_removed_working_directory_and_changed_variables_are_put_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = tmp_path / "start"
    start.mkdir()
    monkeypatch.chdir(start)
    monkeypatch.setenv("PLAIT_TEST_KEPT", "kept")
    monkeypatch.delenv("PLAIT_TEST_ADDED", raising=False)
    before = surroundings()
    gone = tmp_path / "gone"
    gone.mkdir()
    os.chdir(gone)
    gone.rmdir()
    os.environ["PLAIT_TEST_ADDED"] = "added"
    os.environ["PLAIT_TEST_KEPT"] = "changed"
    put_back(before)
    assert os.getcwd() == str(start)
    assert os.environ.get("PLAIT_TEST_ADDED") is None and os.environ["PLAIT_TEST_KEPT"] == "kept"


def test_root_logging_handlers_added_and_its_level_are_put_back() -> None:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    before = surroundings()
    root.addHandler(logging.NullHandler())
    root.setLevel(logging.DEBUG if level != logging.DEBUG else logging.ERROR)
    put_back(before)
    assert (root.handlers, root.level) == (handlers, level)
