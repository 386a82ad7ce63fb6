"""Subworkflows, inlined: a ``@workflow`` called inside another adds its nodes, namespaced ``call.node``, with its
inputs bound to what the caller passed and its outputs returned as promises. (For a launch plan run as a child
execution, see plait.sdk.child.)"""

from __future__ import annotations

from typing import Any

import msgspec

from plait.core.model import (
    AllOf,
    AnyOf,
    Binding,
    BranchSpec,
    Case,
    Collection,
    Comparison,
    Condition,
    FromInput,
    FromNode,
    Guard,
    Interface,
    Mapping,
    Node,
    WorkflowSpec,
)
from plait.errors import DefinitionError
from plait.sdk import tracing
from plait.sdk.hints import encode_value
from plait.sdk.signatures import SINGLE_OUTPUT


class _Renaming:
    """How the called workflow's bindings read in the caller: its inputs are the caller's bindings, its nodes
    are prefixed."""

    def __init__(self, prefix: str, inputs: dict[str, Binding]) -> None:
        self.prefix, self.inputs = prefix, inputs

    def node(self, node_id: str) -> str:
        return f"{self.prefix}.{node_id}"

    def binding(self, binding: Binding) -> Binding:
        match binding:
            case FromInput(name=name):
                return self.inputs[name]
            case FromNode(node=node, output=output):
                return FromNode(self.node(node), output)
            case Collection(items=items):
                return Collection(tuple(self.binding(b) for b in items))
            case Mapping(items=items):
                return Mapping({key: self.binding(b) for key, b in items.items()})
        return binding

    def condition(self, condition: Condition | None) -> Condition | None:
        match condition:
            case Comparison(op=op, left=left, right=right):
                return Comparison(op, self.binding(left), self.binding(right))
            case AllOf(items=items):
                return AllOf(tuple(c for c in map(self.condition, items) if c is not None))
            case AnyOf(items=items):
                return AnyOf(tuple(c for c in map(self.condition, items) if c is not None))
        return None

    def spec_node(self, node: Node) -> Node:
        renamed = msgspec.structs.replace(
            node, id=self.node(node.id), inputs={k: self.binding(b) for k, b in node.inputs.items()}
        )
        if isinstance(node.branch, BranchSpec):
            cases = tuple(
                Case(
                    condition=self.condition(case.condition),
                    outputs={k: self.binding(b) for k, b in case.outputs.items()},
                    fail=case.fail,
                )
                for case in node.branch.cases
            )
            renamed = msgspec.structs.replace(renamed, branch=msgspec.structs.replace(node.branch, cases=cases))
        if isinstance(node.guard, Guard):
            renamed = msgspec.structs.replace(renamed, guard=Guard(self.node(node.guard.branch), node.guard.case))
        return renamed


def _given_inputs(interface: Interface, args: tuple[Any, ...], kwargs: dict[str, Any], where: str) -> dict[str, Any]:
    params = interface.inputs
    given = tracing.arguments_by_name(params, args, kwargs, where)
    unknown = [name for name in given if interface.input(name) is None]
    if unknown:
        raise DefinitionError(f"{where}: unknown input '{unknown[0]}' (inputs: {', '.join(p.name for p in params)})")
    missing = [p.name for p in params if p.required and p.name not in given]
    if missing:
        raise DefinitionError(f"{where}: missing input {', '.join(repr(m) for m in missing)}")
    return given


def inline(
    builder: tracing.WorkflowBuilder[Any],
    name: str,
    spec: WorkflowSpec,
    tasks: dict[str, Any],
    return_is_tuple: bool,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    """Add the nodes of workflow ``spec`` (called ``name``) to ``builder``; returns its outputs as promises."""
    prefix = builder._node_id(name)
    where = f"workflow '{builder.workflow_name}', subworkflow '{prefix}' (workflow '{spec.name}')"
    given = _given_inputs(spec.interface, args, kwargs, where)
    inputs: dict[str, Binding] = {}
    for param in spec.interface.inputs:
        value = given.get(param.name, param.default)
        binding = tracing.checked_binding(value, param.type, f"{where}: input '{param.name}'")
        builder.check_visible(binding, f"{where}: input '{param.name}'")
        inputs[param.name] = binding
    for task_name, task in tasks.items():
        if builder.tasks.setdefault(task_name, task) is not task:
            raise DefinitionError(f"{where}: two different tasks are named '{task_name}'")
    renaming = _Renaming(prefix, inputs)
    for node in spec.nodes:
        builder.add(renaming.spec_node(node))
    outputs = {p.name: (renaming.binding(spec.outputs[p.name]), p) for p in spec.interface.outputs}
    results = {
        name: _result(binding, param.type, f"output '{name}' of {prefix}") for name, (binding, param) in outputs.items()
    }
    if not results:
        return None
    if return_is_tuple:
        return tracing.Outputs(results)
    return results[SINGLE_OUTPUT]


def _result(binding: Binding, type_: Any, label: str) -> Any:
    if isinstance(binding, FromInput | FromNode):
        return tracing.Promise(binding, type_, label)
    if isinstance(binding, Collection | Mapping):
        raise DefinitionError(f"{label}: a subworkflow output built of several promises is not supported yet")
    return encode_value(binding.value)
