"""Child executions inside a ``@workflow``: calling a ``LaunchPlan`` there adds a node that launches it as an
execution of its own (linked to its parent both ways) and returns its outputs as promises.

    nightly = LaunchPlan(report, "nightly", default_inputs={"n": 3})

    @workflow
    def parent(n: int) -> int:
        return double(x=nightly(n=n))

The launch plan must be registered (``plait register``) before the parent runs; if it is not, or the child
fails or is aborted, the node fails (and with it the parent, unless its failure policy is ``finish``). Aborting
the parent aborts its running children.
"""

from __future__ import annotations

from typing import Any

from plait.core.model import Binding, ChildSpec, FromNode, LaunchPlanSpec, Node, WorkflowSpec
from plait.errors import DefinitionError
from plait.sdk import tracing
from plait.sdk.signatures import SINGLE_OUTPUT


def launch_child(
    builder: tracing.WorkflowBuilder[Any],
    plan: LaunchPlanSpec,
    workflow: WorkflowSpec,
    return_is_tuple: bool,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    """Add a node launching ``plan`` (of ``workflow``) to ``builder``; returns its outputs as promises."""
    node_id = builder._node_id(plan.name)
    where = f"workflow '{builder.workflow_name}', child '{node_id}' (launch plan '{plan.name}')"
    interface = workflow.interface
    given = tracing.arguments_by_name(interface.inputs, args, kwargs, where)
    for name in given:
        if interface.input(name) is None:
            known = ", ".join(p.name for p in interface.inputs) or "none"
            raise DefinitionError(f"{where}: unknown input '{name}' (inputs: {known})")
        if name in plan.fixed_inputs:
            raise DefinitionError(f"{where}: input '{name}' is fixed by the launch plan and cannot be given")
    has_value = set(given) | set(plan.default_inputs) | set(plan.fixed_inputs)
    missing = [p.name for p in interface.inputs if p.required and p.name not in has_value]
    if missing:
        raise DefinitionError(f"{where}: missing input {', '.join(repr(m) for m in missing)}")
    inputs: dict[str, Binding] = {}
    for name, value in given.items():
        param = interface.input(name)
        assert param is not None  # noqa: S101  an invariant of this code, not a check of input
        inputs[name] = tracing.checked_binding(value, param.type, f"{where}: input '{name}'")
        builder.check_visible(inputs[name], f"{where}: input '{name}'")
    child = ChildSpec(launch_plan=plan.name, version=plan.version, workflow=workflow.name, interface=interface)
    builder.add(Node(id=node_id, task="", inputs=inputs, child=child))
    results = {
        p.name: tracing.Promise(FromNode(node_id, p.name), p.type, f"output '{p.name}' of child '{node_id}'")
        for p in interface.outputs
    }
    if not results:
        return None
    if return_is_tuple:
        return tracing.Outputs(results)
    return results[SINGLE_OUTPUT]
