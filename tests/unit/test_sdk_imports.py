"""The SDK's modules import one another one way: each imports alone in a fresh interpreter, and no import of one
``plait.sdk`` module by another (anywhere in it, at runtime or for type checking) closes a circle."""

from __future__ import annotations

import ast
import subprocess
import sys
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

import plait.sdk

SDK = Path(plait.sdk.__file__).parent
MODULES = sorted(f"plait.sdk.{path.stem}" for path in SDK.glob("*.py") if path.stem != "__init__")


def sdk_imports(path: Path) -> set[str]:
    """The ``plait.sdk`` modules (or the package itself) that the module at ``path`` imports, wherever it does."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module == "plait.sdk":
            found |= {f"plait.sdk.{a.name}" if (SDK / f"{a.name}.py").exists() else "plait.sdk" for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return {name for name in found if name == "plait.sdk" or name.startswith("plait.sdk.")}


def sdk_graph() -> dict[str, set[str]]:
    """Each ``plait.sdk`` module, the package's ``__init__`` among them, and the SDK modules it imports."""
    graph = {"plait.sdk": sdk_imports(SDK / "__init__.py")}
    for module in MODULES:
        graph[module] = sdk_imports(SDK / f"{module.rsplit('.', 1)[1]}.py")
    return graph


def test_the_sdk_imports_form_no_circle() -> None:
    """A topological order of the SDK's modules exists: none imports, however late, one that imports it back."""
    graph = sdk_graph()
    assert "plait.sdk.tracing" in graph["plait.sdk.task"], "the graph is read from the real imports"
    assert "plait.sdk.task" not in graph["plait.sdk.tracing"]
    try:
        order = list(TopologicalSorter(graph).static_order())
    except CycleError as cycle:
        pytest.fail(f"plait.sdk modules import each other in a circle: {' -> '.join(cycle.args[1])}")
    assert set(order) == {"plait.sdk", *MODULES}


@pytest.mark.parametrize("module", MODULES)
def test_each_sdk_module_imports_first_in_a_fresh_interpreter(module: str) -> None:
    """Importing the module before any other of the SDK's works: it does not rely on an import order."""
    done = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
