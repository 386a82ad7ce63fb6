"""Imports point one way: each layer of docs/design.md ("Layers") imports only the layers below it.

Every import counts, including those inside functions: a late import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = {
    "plait": ROOT / "libs/core/plait",
    "plait_scheduler": ROOT / "services/scheduler/plait_scheduler",
    "plait_executor": ROOT / "services/executor/plait_executor",
    "plait_catalog": ROOT / "services/catalog/plait_catalog",
    "plait_cli": ROOT / "services/cli/plait_cli",
}

LIBRARY_BASE = {"plait.errors"}
PURE = LIBRARY_BASE | {"plait.core"}
WIRE = PURE | {"plait.codec", "plait.protocol"}
SUPPORT = WIRE | {
    "plait.replay",
    "plait.settings",
    "plait.profiles",
    "plait.logging",
    "plait.bounded_cache",
    "plait.sdk",
    "plait.telemetry",
    "plait.metrics",
}
ADAPTERS = SUPPORT | {"plait.adapters"}
CHECKS = ADAPTERS | {"plait.audit", "plait.invariants", "plait.audit_lineage", "plait.audit_signatures"}
LIBRARY = CHECKS | {"plait.client", "plait"}

MAY_IMPORT: dict[str, set[str]] = {
    "plait.errors": set(),
    "plait.core": LIBRARY_BASE,
    "plait.codec": PURE,
    "plait.protocol": PURE | {"plait.codec"},
    **dict.fromkeys(["plait.replay", "plait.bounded_cache", "plait.profiles"], WIRE),
    "plait.telemetry": LIBRARY_BASE,  # OpenTelemetry spans and trace context; a no-op without it
    "plait.logging": WIRE | {"plait.telemetry"},
    "plait.settings": WIRE | {"plait.profiles"},
    "plait.sdk": WIRE,
    "plait.metrics": WIRE,
    "plait.adapters": SUPPORT,
    "plait.audit": ADAPTERS,
    "plait.invariants": ADAPTERS | {"plait.audit"},
    "plait.audit_lineage": ADAPTERS | {"plait.audit"},
    "plait.audit_signatures": ADAPTERS | {"plait.audit"},
    "plait.client": CHECKS,
    "plait": LIBRARY,
    "plait_scheduler": LIBRARY,
    "plait_executor": LIBRARY,
    "plait_catalog": LIBRARY,
    "plait_cli": LIBRARY | {"plait_scheduler", "plait_executor", "plait_catalog"},
}
"""Which layers each layer may import (besides itself and third-party packages)."""

OURS = set(SOURCES)


def layer_of(module: str) -> str:
    """``plait.core.decide`` → ``plait.core``; ``plait`` itself and its top-level modules by name; a service by
    its package."""
    parts = module.split(".")
    if parts[0] != "plait":
        return parts[0]
    return "plait" if len(parts) == 1 else f"plait.{parts[1]}"


def module_name(package: str, path: Path) -> str:
    relative = path.relative_to(SOURCES[package]).with_suffix("").parts
    parts = [package, *relative]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, module: str) -> list[tuple[int, str]]:
    """Every module ``path`` imports, absolute or relative, with the line it does so on."""
    found: list[tuple[int, str]] = []
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            # ``from plait import codec`` imports the module plait.codec, not the package plait.
            found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names] if target == "plait" else []
            found += [] if target == "plait" else [(node.lineno, target)]
    return found


def wrong_way_imports() -> list[str]:
    wrong: list[str] = []
    for package, source in SOURCES.items():
        for path in sorted(source.rglob("*.py")):
            module = module_name(package, path)
            here = layer_of(module)
            for line, imported in imports_of(path, module):
                if imported.split(".")[0] not in OURS:
                    continue
                there = layer_of(imported)
                if there != here and there not in MAY_IMPORT[here]:
                    wrong.append(f"{path.relative_to(ROOT)}:{line}: {here} imports {imported} ({there})")
    return wrong


def test_every_layer_is_known() -> None:
    layers = {
        layer_of(module_name(package, path)) for package, source in SOURCES.items() for path in source.rglob("*.py")
    }
    assert layers <= set(MAY_IMPORT), f"add these to MAY_IMPORT and docs/design.md: {sorted(layers - set(MAY_IMPORT))}"


def test_no_import_points_the_wrong_way() -> None:
    assert wrong_way_imports() == []


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        ("plait.core.decide", "from plait.client import AsyncClient\n", "plait.core imports plait.client"),
        ("plait.client.launching", "def f():\n    import plait_scheduler\n", "plait.client imports plait_scheduler"),
        ("plait_scheduler.service", "from plait_cli import main\n", "plait_scheduler imports plait_cli"),
        ("plait.adapters.streams", "from plait import client\n", "plait.adapters imports plait.client"),
    ],
)
def test_a_wrong_way_import_is_caught(tmp_path: Path, module: str, source: str, expected: str) -> None:
    """The check itself: an import that points up a layer, even inside a function, is reported."""
    path = tmp_path / "probe.py"
    path.write_text(source)
    here = layer_of(module)
    reported = [
        f"{here} imports {imported}"
        for _, imported in imports_of(path, module)
        if imported.split(".")[0] in OURS and layer_of(imported) != here and layer_of(imported) not in MAY_IMPORT[here]
    ]
    assert reported and reported[0].startswith(expected)
