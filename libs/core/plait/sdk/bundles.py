"""Packing a workflow's source into a code bundle (fast registration): the folders its modules were imported from,
as one deterministic tar, so the same source always makes the same bundle and the same hash.

Each source root (the folder a module's top-level package or file sits in) is one member folder of the tar, in the
order the workflow names them: ``0/`` for the workflow's own, then one per other root of its tasks. A worker puts
them on ``sys.path`` in that order. Installed packages (under ``site-packages``, the standard library) are not
packed: the worker's image provides them.
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
import sysconfig
import tarfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from plait.errors import DefinitionError
from plait.sdk.workflow import Workflow

MAX_BUNDLE_BYTES = 64 * 1024 * 1024
"""A bundle larger than this is refused, when packed and when unpacked: fast registration is for source code; large
files belong in the image or in ``File``/``Directory`` values."""
MAX_BUNDLE_MEMBERS = 20_000

SKIPPED_FOLDERS = frozenset({"__pycache__", "node_modules", ".git", ".hg", ".svn", ".venv", "venv", ".tox", ".nox"})
SKIPPED_SUFFIXES = (".pyc", ".pyo", ".egg-info", ".so.tmp")


class NoBundle(DefinitionError):
    """The workflow's source cannot be bundled: no module of it comes from a source file, or it is too large."""


class CodeBundle:
    """A packed bundle: its archive's bytes, and their SHA-256 (its name in the code bucket)."""

    def __init__(self, data: bytes, roots: tuple[Path, ...]) -> None:
        self.data = data
        self.roots = roots
        self.hash = hashlib.sha256(data).hexdigest()

    @property
    def size(self) -> int:
        return len(self.data)


def source_roots(workflow: Workflow[Any, Any]) -> tuple[Path, ...]:
    """The folders the workflow's module and its tasks' modules were imported from, the workflow's first."""
    modules = [(workflow.fn.__module__, getattr(sys.modules.get(workflow.fn.__module__), "__file__", None))]
    modules += [(spec.target.module, spec.target.file) for spec in workflow.spec.tasks.values()]
    roots: list[Path] = []
    for module, file in modules:
        root = _root_of(module, file)
        if root is not None and root not in roots:
            roots.append(root)
    if not roots:
        raise NoBundle(f"workflow {workflow.name}: none of its modules was loaded from a source file to bundle")
    return tuple(roots)


def pack(workflow: Workflow[Any, Any]) -> CodeBundle:
    """The workflow's source bundle. Raises ``NoBundle`` when it has no source file, or is larger than
    ``MAX_BUNDLE_BYTES``."""
    roots = source_roots(workflow)
    buffer = io.BytesIO()
    total, members = 0, 0
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for index, root in enumerate(roots):
            for path in _files_under(root):
                info = tar.gettarinfo(str(path), arcname=f"{index}/{path.relative_to(root).as_posix()}")
                info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                info.mode = 0o644
                total += info.size
                members += 1
                if total > MAX_BUNDLE_BYTES or members > MAX_BUNDLE_MEMBERS:
                    raise NoBundle(
                        f"workflow {workflow.name}: its source under {root} is over {MAX_BUNDLE_BYTES:,} bytes or "
                        f"{MAX_BUNDLE_MEMBERS:,} files: too large for a code bundle (register it without one)"
                    )
                with path.open("rb") as source:
                    tar.addfile(info, source)
    return CodeBundle(buffer.getvalue(), roots)


def _root_of(module: str, file: str | None) -> Path | None:
    """The folder ``module`` was imported from (``a.b`` from ``ROOT/a/b.py``), unless it is not a source file or is
    installed (the image provides it)."""
    if module == "__main__" or not file or not file.endswith(".py"):
        return None
    path = Path(file).resolve()
    depth = module.count(".") + (1 if path.name == "__init__.py" else 0)
    if len(path.parents) <= depth:
        return None
    root = path.parents[depth]
    if any(_is_under(root, Path(installed)) for installed in _installed_paths()):
        return None
    return root


def _installed_paths() -> Iterable[str]:
    paths = sysconfig.get_paths()
    return {paths[name] for name in ("stdlib", "platstdlib", "purelib", "platlib") if name in paths}


def _is_under(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def _files_under(root: Path) -> list[Path]:
    """The regular files under ``root``, sorted, without caches, version control, virtual environments and hidden
    folders."""
    found: list[Path] = []
    for directory, folders, files in os.walk(root):
        folders[:] = sorted(
            name
            for name in folders
            if name not in SKIPPED_FOLDERS
            and not name.startswith(".")
            and not name.endswith(SKIPPED_SUFFIXES)
            and not Path(directory, name, "pyvenv.cfg").exists()
        )
        for name in sorted(files):
            path = Path(directory, name)
            if not name.endswith(SKIPPED_SUFFIXES) and path.is_file() and not path.is_symlink():
                found.append(path)
    return found
