"""Conditionals in the pure core: which case of a branch node holds, and which nodes its choice skips."""

from __future__ import annotations

import operator
from collections import abc
from collections.abc import Callable
from typing import Any

import msgspec

from plait.core.model import (
    AllOf,
    AnyOf,
    BranchSpec,
    ChildSpec,
    Comparison,
    Condition,
    Constant,
    FromInput,
    FromNode,
    GateSpec,
    Guard,
    Interface,
    Node,
    Param,
    WorkflowSpec,
    node_interface,
    resolve,
    upstream_nodes,
)

_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


class ConditionError(Exception):
    """A condition could not be evaluated on the values it met (``None < 1``, ``"a" > 2``)."""


def branch_of(node: Node) -> BranchSpec | None:
    return node.branch if isinstance(node.branch, BranchSpec) else None


def guard_of(node: Node) -> Guard | None:
    return node.guard if isinstance(node.guard, Guard) else None


def condition_upstream(condition: Condition | None) -> set[str]:
    """The ids of the nodes a condition reads."""
    match condition:
        case Comparison(left=left, right=right):
            return upstream_nodes(left) | upstream_nodes(right)
        case AllOf(items=items) | AnyOf(items=items):
            return set().union(*(condition_upstream(c) for c in items))
    return set()


def node_upstream(node: Node) -> set[str]:
    """The nodes that must finish before ``node`` is ready: those its inputs read, and for a branch node those its
    conditions read (its cases' nodes run after it chose one)."""
    upstream: set[str] = set().union(*(upstream_nodes(b) for b in node.inputs.values()))
    if (branch := branch_of(node)) is not None:
        upstream |= set().union(*(condition_upstream(case.condition) for case in branch.cases))
    return upstream


def holds(
    condition: Condition, inputs: abc.Mapping[str, Any], outputs: abc.Mapping[str, abc.Mapping[str, Any]]
) -> bool:
    """Whether ``condition`` holds for the workflow's inputs and the finished nodes' outputs."""
    match condition:
        case Comparison(op=op, left=left, right=right):
            a, b = resolve(left, inputs, outputs), resolve(right, inputs, outputs)
            try:
                return bool(_OPERATORS[op](a, b))
            except TypeError:
                raise ConditionError(f"cannot compare {a!r} {op} {b!r}") from None
        case AllOf(items=items):
            return all(holds(c, inputs, outputs) for c in items)
        case AnyOf(items=items):
            return any(holds(c, inputs, outputs) for c in items)


def chosen_case(
    branch: BranchSpec, inputs: abc.Mapping[str, Any], outputs: abc.Mapping[str, abc.Mapping[str, Any]]
) -> int:
    """The index of the first case that holds (an ``else`` always does); -1 when none does."""
    for index, case in enumerate(branch.cases):
        if case.condition is None or holds(case.condition, inputs, outputs):
            return index
    return -1


def case_members(workflow: WorkflowSpec) -> dict[str, list[list[str]]]:
    """For each branch node, the ids of the nodes directly inside each of its cases."""
    members: dict[str, list[list[str]]] = {
        node.id: [[] for _ in branch.cases] for node in workflow.nodes if (branch := branch_of(node))
    }
    for node in workflow.nodes:
        if (guard := guard_of(node)) is not None:
            members[guard.branch][guard.case].append(node.id)
    return members


def skipped_by(members: dict[str, list[list[str]]], branch: str, taken: int) -> list[str]:
    """The nodes a branch's choice skips: those of the cases not taken, and of the branches nested in them."""
    skipped: list[str] = []
    pending = [node for index, case in enumerate(members[branch]) if index != taken for node in case]
    while pending:
        node = pending.pop(0)
        skipped.append(node)
        pending += [inner for case in members.get(node, []) for inner in case]
    return skipped


def interface_of_node(workflow: WorkflowSpec, node: Node) -> Interface:
    """The interface a node presents: a branch's outputs, or its task's (lists of them for a map node)."""
    if (branch := branch_of(node)) is not None:
        return Interface((), branch.outputs)
    if isinstance(node.gate, GateSpec):
        params = (Param("value", node.gate.type),) if node.gate.type is not None else ()
        inputs = params if "value" in node.inputs else ()
        return Interface(inputs, tuple(Param("result", p.type) for p in params))
    if isinstance(node.child, ChildSpec):
        given = tuple(p for p in node.child.interface.inputs if p.name in node.inputs)
        return Interface(given, node.child.interface.outputs)
    return node_interface(workflow.tasks[node.task], node)


def node_kind(node: Node) -> str:
    """What a node is: "task", "branch", or its gate's kind ("signal", "approve", "sleep")."""
    if branch_of(node) is not None:
        return "branch"
    if isinstance(node.gate, GateSpec):
        return node.gate.kind
    if isinstance(node.child, ChildSpec):
        return "child"
    return "task"


def node_label(node: Node) -> str:
    """A node's kind as a person reads it: its task's short name, or "(branch)", "(signal)"..."""
    kind = node_kind(node)
    return node.task.rsplit(".", 1)[-1] if kind == "task" else f"({kind})"


def describe_condition(condition: Condition | None) -> str:
    """A condition as a person reads it: ``output 'result' of node 'score' > 0.5``."""
    match condition:
        case None:
            return "else"
        case Comparison(op=op, left=left, right=right):
            return f"{_describe_operand(left)} {op} {_describe_operand(right)}"
        case AllOf(items=items):
            return " & ".join(f"({describe_condition(c)})" for c in items)
        case AnyOf(items=items):
            return " | ".join(f"({describe_condition(c)})" for c in items)


def _describe_operand(binding: Any) -> str:
    match binding:
        case FromInput(name=name):
            return f"input {name}"
        case FromNode(node=node, output=output):
            return f"{node}.{output}"
        case Constant(value=value):
            return repr(value)
    return msgspec.json.encode(binding).decode()
