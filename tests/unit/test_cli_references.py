"""What `plait run` and `plait register` take: FILE.py:NAME, module:NAME, or a file alone that defines just one
workflow or launch plan; a name that is not there, or a file with several, is an error naming those it has."""

from __future__ import annotations

from pathlib import Path

import pytest

from plait.errors import DefinitionError, NotFound, PlaitError
from plait.sdk.launch_plan import LaunchPlan
from plait.sdk.workflow import Workflow
from plait_cli.references import runnable

ONE_WORKFLOW = """
from plait import task, workflow

@task
def double(x: int) -> int:
    return 2 * x

@workflow
def doubled(x: int = 1) -> int:
    return double(x=x)
"""


@pytest.mark.usefixtures("loading")
def test_a_file_that_defines_one_workflow_names_it(tmp_path: Path) -> None:
    (tmp_path / "only_one.py").write_text(ONE_WORKFLOW)
    found = runnable(str(tmp_path / "only_one.py"))
    assert isinstance(found, Workflow) and found.short_name == "doubled"
    hello = runnable("examples/hello.py")
    assert isinstance(hello, Workflow) and hello.short_name == "greet"


@pytest.mark.usefixtures("loading")
def test_a_name_picks_a_workflow_or_a_launch_plan() -> None:
    assert isinstance(runnable("examples/etl.py:daily"), LaunchPlan)
    etl = runnable("examples/etl.py:etl")
    assert isinstance(etl, Workflow) and etl.short_name == "etl"


@pytest.mark.parametrize(
    ("reference", "error", "message"),
    [
        (
            "examples/etl.py",
            DefinitionError,
            "examples/etl.py has several workflows and launch plans: name one as examples/etl.py:daily, "
            "examples/etl.py:etl",
        ),
        (
            "examples/etl.py:nothing",
            NotFound,
            "examples/etl.py has no 'nothing'; try examples/etl.py:daily, examples/etl.py:etl",
        ),
        (
            "examples/etl.py:extract",
            DefinitionError,
            "examples/etl.py:extract is not a @workflow or a LaunchPlan (it is Task)",
        ),
        (
            "examples/etl.py:",
            DefinitionError,
            "'examples/etl.py:' is not of the form FILE.py, FILE.py:NAME or module:NAME",
        ),
        ("examples/etl", DefinitionError, "'examples/etl' is not of the form FILE.py, FILE.py:NAME or module:NAME"),
        ("examples/nowhere.py", NotFound, "no such file: examples/nowhere.py"),
        ("tests/unit/__init__.py", NotFound, "tests/unit/__init__.py defines no @workflow or LaunchPlan"),
    ],
)
@pytest.mark.usefixtures("loading")
def test_a_reference_that_names_no_one_runnable_is_a_clear_error(
    reference: str, error: type[PlaitError], message: str
) -> None:
    with pytest.raises(error) as raised:
        runnable(reference)
    assert str(raised.value) == message
