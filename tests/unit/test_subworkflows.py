"""Subworkflows, inlined: a workflow called inside another adds its nodes there, namespaced by the call, with its
inputs bound to what the caller passed; the core runs them as any other nodes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from plait import DefinitionError, workflow
from plait.core.decide import decide_batch
from plait.core.events import Event, NodeQueued, NodeSkipped
from plait.core.model import Constant, FromInput, FromNode, Guard
from plait.core.state import Execution
from tests import branch_workflows
from tests.helpers.launching import launched
from tests.helpers.reports import result_of

AT = datetime(2026, 1, 2, tzinfo=UTC)


def test_the_called_workflows_nodes_are_inlined_under_the_calls_name() -> None:
    spec = branch_workflows.calls_a_subworkflow.spec
    nodes = {node.id: node for node in spec.nodes}
    assert list(nodes) == [
        "doubled_label.double",
        "doubled_label.label",
        "doubled_label-1.double",
        "doubled_label-1.label",
        "shout",
        "shout-1",
        "again",
    ]
    assert nodes["doubled_label.double"].inputs == {"x": FromInput("x")}
    assert nodes["doubled_label.label"].inputs == {
        "prefix": Constant("first"),
        "x": FromNode("doubled_label.double", "result"),
    }
    assert nodes["doubled_label-1.label"].inputs["prefix"] == FromNode("doubled_label.label", "result")
    assert nodes["doubled_label-1.double"].guard == Guard("again", 0)
    assert set(spec.tasks) == {
        "tests.branch_workflows.double",
        "tests.branch_workflows.label",
        "tests.branch_workflows.shout",
    }


def finish(state: Execution, queued: NodeQueued, value: object) -> list[Event]:
    command = result_of(queued, value, state.execution_id)
    return decide_batch(state, [command], AT).events


def test_inlined_nodes_run_in_order_and_a_case_not_taken_skips_them() -> None:
    state, events = launched(branch_workflows.calls_a_subworkflow, {"x": -1.0}, AT)
    assert {e.node for e in events if isinstance(e, NodeSkipped)} == {
        "doubled_label-1.double",
        "doubled_label-1.label",
        "shout",
    }
    [queued] = [e for e in events if isinstance(e, NodeQueued)]
    assert queued.node == "doubled_label.double"
    [queued] = [e for e in finish(state, queued, -2.0) if isinstance(e, NodeQueued)]
    assert (queued.node, queued.inputs) == ("doubled_label.label", {"prefix": "first", "x": -2.0})
    [queued] = [e for e in finish(state, queued, "first:-2") if isinstance(e, NodeQueued)]
    assert (queued.node, queued.inputs) == ("shout-1", {"text": "first:-2"})


def test_a_subworkflow_call_missing_an_input_is_refused_naming_it() -> None:
    with pytest.raises(DefinitionError, match=r"subworkflow 'doubled_label' .*missing input 'prefix'"):

        @workflow
        def forgets(x: float) -> str:
            return branch_workflows.doubled_label(x=x)  # type: ignore[call-arg]
