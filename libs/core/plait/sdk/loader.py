"""Loading user code: a workflow named as ``FILE.py:NAME`` or ``module:NAME``, and a task by its target."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from plait.core.model import TaskTarget
from plait.errors import DefinitionError, NotFound


def load_module(module_name: str, file: str | None) -> ModuleType:
    """The module, imported by name, or executed from ``file`` under that name (its folder joins sys.path)."""
    if module_name in sys.modules:
        return sys.modules[module_name]
    if file is None or not Path(file).exists():
        try:
            return importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            raise NotFound(f"cannot import module '{module_name}': {exc}") from None
    folder = str(Path(file).resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(module_name, file)
    if spec is None or spec.loader is None:
        raise NotFound(f"cannot load Python code from {file}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def load_reference(reference: str) -> Any:
    """The object named by ``path/to/file.py:name`` or ``package.module:name``."""
    location, _, name = reference.rpartition(":")
    if not location or not name:
        raise DefinitionError(f"'{reference}' is not of the form FILE.py:NAME or module:NAME")
    module = load_location(location)
    try:
        return getattr(module, name)
    except AttributeError:
        raise NotFound(f"{location} has no '{name}'") from None


def load_location(location: str) -> ModuleType:
    """The module at ``path/to/file.py``, or named ``package.module``."""
    if location.endswith(".py"):
        path = Path(location)
        if not path.exists():
            raise NotFound(f"no such file: {location}")
        return load_module(path.stem, str(path.resolve()))
    return load_module(location, None)


def load_target(target: TaskTarget) -> Any:
    """The object a task target names (a ``Task``), importing its module the way it was registered."""
    obj: Any = load_module(target.module, target.file)
    for part in target.qualname.split("."):
        obj = getattr(obj, part)
    return obj
