"""Dynamic nodes: a ``@dynamic`` task's attempt builds a sub-DAG from its actual inputs, which the execution then runs.

The attempt's only output, ``DYNAMIC_OUTPUT``, holds the generated ``DynamicWorkflow`` (its nodes, their bindings,
its outputs and the specs of the tasks it runs). The core checks it and records it whole in ``DynamicExpanded``, so a
replay rebuilds the execution without the user's code. Its nodes join the execution under the dynamic node's id
(``fan_out.square``, ``fan_out.square-1``...); the dynamic node succeeds with the generated outputs once they all did.
Pure: these functions read specs only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from plait.core.model import (
    Binding,
    Collection,
    FromInput,
    FromNode,
    Interface,
    Mapping,
    Node,
    TaskSpec,
    WorkflowSpec,
    upstream_nodes,
)
from plait.core.validate import node_id_problem, validate_workflow
from plait.errors import DefinitionError

if TYPE_CHECKING:
    from plait.core.events import DynamicExpanded

DYNAMIC_OUTPUT = "__plait_dynamic__"
"""The output under which a dynamic task's attempt returns the workflow it generated (the wire form of
``DynamicWorkflow``)."""

MAX_GENERATED_NODES = 1_000
"""Nodes one dynamic node may generate: the whole sub-DAG is recorded in one event of the execution's log."""

MAX_EXECUTION_NODES = 10_000
"""Nodes one execution may hold, its own and every generated one: nested dynamic nodes cannot multiply past it."""

MAX_DYNAMIC_DEPTH = 4
"""How deeply dynamic nodes may generate dynamic nodes (a dynamic node of the workflow itself is at depth 1)."""


class DynamicWorkflow(msgspec.Struct, frozen=True, kw_only=True):
    """The sub-DAG one attempt of a dynamic task generated: node ids and bindings as traced (not namespaced)."""

    nodes: tuple[Node, ...] = ()
    outputs: dict[str, Binding] = {}
    tasks: dict[str, TaskSpec] = {}


_decoder = msgspec.json.Decoder(DynamicWorkflow)


def is_dynamic(task: TaskSpec) -> bool:
    return task.dynamic is True


def generated_of(outputs: dict[str, Any]) -> DynamicWorkflow:
    """The generated workflow a dynamic attempt's outputs carry; ``ValueError`` naming what is wrong."""
    if set(outputs) != {DYNAMIC_OUTPUT}:
        raise ValueError(f"a dynamic task's attempt returns only '{DYNAMIC_OUTPUT}', got {sorted(outputs)}")
    try:
        return msgspec.convert(outputs[DYNAMIC_OUTPUT], DynamicWorkflow)
    except msgspec.ValidationError as exc:
        raise ValueError(f"the generated workflow is malformed: {exc}") from None


def depth_of(node_id: str) -> int:
    """How many dynamic nodes enclose node ``node_id`` (0: a node of the workflow itself)."""
    return node_id.count(".")


def generation_problem(
    dynamic_node: str, interface: Interface, generated: DynamicWorkflow, execution_nodes: int = 0
) -> str | None:
    """Why ``generated`` cannot run as the sub-DAG of dynamic node ``dynamic_node`` (in an execution that has
    ``execution_nodes`` nodes so far), or None."""
    if len(generated.nodes) > MAX_GENERATED_NODES:
        return f"it generated {len(generated.nodes)} nodes; the limit is {MAX_GENERATED_NODES}"
    if execution_nodes + len(generated.nodes) > MAX_EXECUTION_NODES:
        return (
            f"its {len(generated.nodes)} nodes would make the execution {execution_nodes + len(generated.nodes)} "
            f"nodes; the limit is {MAX_EXECUTION_NODES}"
        )
    if depth_of(dynamic_node) + 1 > MAX_DYNAMIC_DEPTH:
        return f"dynamic nodes nest more than {MAX_DYNAMIC_DEPTH} deep"
    bad_ids = [node.id for node in generated.nodes if "." in node.id or node_id_problem(node.id) is not None]
    if bad_ids:
        return "node ids may not be empty or hold '.', '/', ',', whitespace or control characters: " + ", ".join(
            map(repr, bad_ids)
        )
    reads_input = [node.id for node in generated.nodes if any(_reads_input(b) for b in node.inputs.values())]
    if reads_input or any(_reads_input(b) for b in generated.outputs.values()):
        return "a generated workflow binds values, not inputs: " + ", ".join(map(repr, reads_input or ["outputs"]))
    known = {node.id for node in generated.nodes}
    for name, binding in generated.outputs.items():
        if unknown := upstream_nodes(binding) - known:
            return f"output '{name}' reads unknown node {', '.join(map(repr, sorted(unknown)))}"
    wanted, given = {p.name for p in interface.outputs}, set(generated.outputs)
    if wanted != given:
        return f"its outputs are {sorted(given)}, the task declares {sorted(wanted)}"
    spec = WorkflowSpec(
        name=dynamic_node,
        version="",
        interface=Interface(outputs=interface.outputs),
        nodes=generated.nodes,
        outputs=generated.outputs,
        tasks=generated.tasks,
    )
    try:
        validate_workflow(spec)
    except DefinitionError as exc:
        return str(exc)
    return None


def _reads_input(binding: Binding) -> bool:
    match binding:
        case FromInput():
            return True
        case Collection(items=items):
            return any(_reads_input(b) for b in items)
        case Mapping(items=items):
            return any(_reads_input(b) for b in items.values())
    return False


def generated_node_id(dynamic_node: str, node: str) -> str:
    return f"{dynamic_node}.{node}"


def namespaced(dynamic_node: str, binding: Binding) -> Binding:
    """``binding`` with the node ids it reads prefixed by the dynamic node's id."""
    match binding:
        case FromNode(node=node, output=output):
            return FromNode(generated_node_id(dynamic_node, node), output)
        case Collection(items=items):
            return Collection(tuple(namespaced(dynamic_node, b) for b in items))
        case Mapping(items=items):
            return Mapping({key: namespaced(dynamic_node, b) for key, b in items.items()})
    return binding


def task_keys(dynamic_node: str, generated: DynamicWorkflow, known: dict[str, TaskSpec]) -> dict[str, str]:
    """The key each generated task has in the execution's tasks: its own, unless the execution already knows
    another spec under it; then one namespaced by the dynamic node."""
    return {
        key: key if known.get(key, spec) == spec else f"{dynamic_node}/{key}" for key, spec in generated.tasks.items()
    }


def expanded_nodes(dynamic_node: str, generated: DynamicWorkflow, keys: dict[str, str]) -> tuple[Node, ...]:
    """The generated nodes as the execution runs them: ids, bindings and task keys namespaced."""
    return tuple(
        Node(
            id=generated_node_id(dynamic_node, node.id),
            task=keys[node.task],
            inputs={name: namespaced(dynamic_node, b) for name, b in node.inputs.items()},
            map=node.map,
        )
        for node in generated.nodes
    )


SUMMARY_NODES = 5
"""Generated nodes a summary names before it only counts the rest."""


def generated_summary(event: DynamicExpanded) -> str:
    """What a ``DynamicExpanded`` event generated, in a line: "generated 3 nodes: fan.square, fan.square-1, ..."."""
    ids = [generated_node_id(event.node, node.id) for node in event.workflow.nodes]
    shown = ", ".join(ids[:SUMMARY_NODES]) + (
        f" and {len(ids) - SUMMARY_NODES} more" if len(ids) > SUMMARY_NODES else ""
    )
    return f"generated {len(ids)} node{'s' if len(ids) != 1 else ''}" + (f": {shown}" if ids else "")
