"""Temporary files of the tasks a local worker runs: ``tempfile`` (and, through ``TMPDIR``, their subprocesses) make
them in the worker's own folder under the executor's. What an attempt leaves there is moved aside at its end (the
paths of the files it returned moved along) and removed by the executor once the attempt's outputs are stored, so a
warm worker, which runs thousands of attempts, leaves nothing behind. An attempt that leaves nothing costs one read of
an empty folder."""

from __future__ import annotations

import itertools
import os
import tempfile
from typing import Any

import msgspec

from plait.core.values import TAG_FIELD
from plait_executor.attempt import AttemptOutcome

_set_aside = itertools.count()
_made: set[str] = set()


def worker_folder(root: str) -> str:
    """This worker process's folder of temporary files under the executor's ``root``."""
    return os.path.join(root, str(os.getpid()))


def temporary_files_in(folder: str | None) -> None:
    """Before an attempt runs: ``tempfile`` and ``TMPDIR`` name ``folder`` (made here the first time). Not put back
    after: the worker serves one executor, whose folder it stays."""
    if folder is None:
        return
    if folder not in _made:
        os.makedirs(folder, exist_ok=True)
        _made.add(folder)
    tempfile.tempdir = folder  # again each time: a task may have changed it
    if os.environ.get("TMPDIR") != folder:
        os.environ["TMPDIR"] = folder


def set_aside(outcome: AttemptOutcome, folder: str | None) -> AttemptOutcome:
    """``outcome`` with what its attempt left in ``folder`` moved to a folder of its own (``outcome.leftovers``, for
    the executor to remove) and the paths its outputs name in there moved along; unchanged when it left nothing."""
    if folder is None:
        return outcome
    try:
        with os.scandir(folder) as entries:
            if next(entries, None) is None:
                return outcome
        aside = f"{folder}-{next(_set_aside)}"
        os.rename(folder, aside)
        os.mkdir(folder)
    except OSError:  # left where it is: removed with the worker's folder, at the latest when the executor stops
        return outcome
    outputs = None if outcome.outputs is None else _moved(outcome.outputs, folder + os.sep, aside + os.sep)
    return msgspec.structs.replace(outcome, outputs=outputs, leftovers=aside)


def _moved(value: Any, before: str, after: str) -> Any:
    if isinstance(value, dict):
        path = value.get("path")
        if TAG_FIELD in value and isinstance(path, str) and path.startswith(before):
            return {**value, "path": after + path[len(before) :]}
        return {key: _moved(item, before, after) for key, item in value.items()}
    if isinstance(value, list):
        return [_moved(item, before, after) for item in value]
    return value
