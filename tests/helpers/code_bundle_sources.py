"""Workflow source files that tests write, edit and delete, to show fast registration (tests/test_code_bundles.py,
tests/test_kubernetes_backend.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from plait.sdk.loader import load_module
from plait.sdk.workflow import Workflow

HELPER = "SUFFIX = {suffix!r}\n"

FLOW = """
from plait import task, workflow

from {helper} import SUFFIX


@task(system_retries={system_retries})
def answer(x: int) -> str:
    return f"{{x * {factor}}}" + SUFFIX


@workflow
def flow(x: int) -> str:
    return answer(x=x)
"""


def write_flow(folder: Path, module: str, factor: int, suffix: str = "", system_retries: int = 3) -> Workflow[Any, Any]:
    """Write ``module``.py (a task returning ``x * factor`` and a helper module's suffix) in ``folder``, and load
    it afresh under that name."""
    folder.mkdir(parents=True, exist_ok=True)
    helper = f"{module}_helper"
    (folder / f"{helper}.py").write_text(HELPER.format(suffix=suffix))
    path = folder / f"{module}.py"
    path.write_text(FLOW.format(helper=helper, factor=factor, system_retries=system_retries))
    for name in (module, helper):
        sys.modules.pop(name, None)
    flow: Workflow[Any, Any] = load_module(module, str(path)).flow
    return flow
