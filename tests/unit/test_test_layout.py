"""The layout of tests/: helpers in tests/helpers (or in a package of their own, as sim/ and faults/), fixtures in
conftest.py, no test module importing another, and unit tests (tests/unit) that start no server."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.unit.conftest import SERVER_FIXTURES

TESTS = Path(__file__).resolve().parents[1]
# Workflows the executor imports by module path; the recorded history (fixtures/history.v1.jsonl) names
# tests.audit_workflows' tasks, so these stay where the names they are registered under say.
WORKFLOW_MODULES = {
    "workflows.py",
    "trace_workflows.py",
    "audit_workflows.py",
    "branch_workflows.py",
    "gate_workflows.py",
    "cache_workflows.py",
    "cli_input_workflows.py",
    "definitions.py",
    "executor_tasks.py",
    "kubernetes_workflows.py",
    "fault_workflows.py",
    "large_value_workflows.py",
    "lineage_workflows.py",
    "map_workflows.py",
    "nul_workflows.py",
    "retry_workflows.py",
    "timeout_workflows.py",
    "lifecycle_workflows.py",
    "schedule_workflows.py",
    "dynamic_workflows.py",
    "cluster_workflows.py",
    "output_workflows.py",
    "child_workflows.py",
    "chunk_workflows.py",
    "dataframe_workflows.py",
    "secret_workflows.py",
    "scratch_workflows.py",
    "import_environment_tasks.py",
}


def imported_modules(path: Path) -> list[str]:
    """The absolute module names ``path`` imports: each ``import x`` and each ``from x import y`` as x and x.y."""
    package = ".".join(path.relative_to(TESTS.parent).parent.parts)
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = parts[: len(parts) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            names.append(base)
            names.extend(f"{base}.{alias.name}" for alias in node.names)
    return names


def test_no_module_of_the_tests_imports_a_test_module() -> None:
    importing = {
        str(path.relative_to(TESTS)): names
        for path in sorted(TESTS.rglob("*.py"))
        if (names := [name for name in imported_modules(path) if is_test_module(name)])
    }
    assert not importing, f"move what test modules share to tests/helpers or a conftest.py: {importing}"


def is_test_module(name: str) -> bool:
    return name.startswith("tests.") and name.split(".")[-1].startswith("test_")


def test_the_top_of_tests_holds_no_helper_module() -> None:
    modules = {path.name for path in TESTS.glob("*.py")}
    stray = modules - WORKFLOW_MODULES - {"__init__.py", "conftest.py"} - {m for m in modules if m.startswith("test_")}
    assert not stray, f"helpers belong in tests/helpers, not at the top of tests/: {sorted(stray)}"


def test_the_unit_tests_refuse_every_server_fixture_of_the_integration_tests() -> None:
    conftest = ast.parse((TESTS / "conftest.py").read_text())
    fixtures = {
        node.name
        for node in conftest.body
        if isinstance(node, ast.FunctionDef)
        and any(
            "fixture" in ast.unparse(decorator) and "autouse" not in ast.unparse(decorator)
            for decorator in node.decorator_list
        )
    }
    assert fixtures == SERVER_FIXTURES


def test_a_unit_test_asking_for_a_server_fails(request: pytest.FixtureRequest) -> None:
    for fixture in SERVER_FIXTURES:
        with pytest.raises(pytest.fail.Exception, match=f"asks for '{fixture}'"):
            request.getfixturevalue(fixture)
