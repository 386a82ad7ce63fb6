"""In a worker process: importing a task from an unpacked code bundle (its source roots first on ``sys.path``), not
from the file it was registered from. A worker that imported from one bundle serves no other (``WorkerPool``)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import msgspec

from plait.core.model import TaskTarget
from plait_executor.attempt import AttemptOutcome


def bundle_paths(code_root: str) -> list[str]:
    """The source roots of an unpacked bundle (``0``, ``1``, …), in order; none when it is gone (evicted from the
    cache: the task is then imported by name, and refused unless its version is the registered one)."""
    if not Path(code_root).is_dir():
        return []
    roots = [path for path in Path(code_root).iterdir() if path.is_dir() and path.name.isdigit()]
    return [str(path) for path in sorted(roots, key=lambda path: int(path.name))]


_first_on_path: list[str] = []
"""The code root whose source roots this process put first on ``sys.path`` (a worker serves one code root only)."""


def target_in_code_root(target: TaskTarget, code_root: str | None) -> TaskTarget:
    """``target`` as this process imports it: unchanged without a bundle; else by module name, with the bundle's
    roots put first on ``sys.path`` (the registered file is not read: it may have changed, or not be here), once
    per process and code root."""
    if code_root is None:
        return target
    if _first_on_path != [code_root]:
        roots = bundle_paths(code_root)
        for path in reversed(roots):
            while path in sys.path:  # inherited from the executor's process, say: it must come first
                sys.path.remove(path)
            sys.path.insert(0, path)
        _first_on_path[:] = [code_root] if roots else []
    return TaskTarget(module=target.module, qualname=target.qualname, file=None)


def traceback_in_bundle(outcome: AttemptOutcome, code_root: str | None) -> AttemptOutcome:
    """``outcome`` with its traceback naming the bundle's files by their path in the project (``pkg/mod.py``), not in
    this executor's cache folder: the same text whichever executor ran it, and no temporary path in the log."""
    error = outcome.error
    if code_root is None or error is None or code_root not in error.traceback:
        return outcome
    traceback = re.sub(re.escape(code_root.rstrip("/")) + r"/\d+/", "", error.traceback)
    return msgspec.structs.replace(outcome, error=msgspec.structs.replace(error, traceback=traceback))
