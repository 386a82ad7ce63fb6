"""Checks of a workflow spec as a whole, for specs traced from Python and specs sent by any client."""

from __future__ import annotations

from graphlib import CycleError, TopologicalSorter

from plait.core.model import WorkflowSpec, upstream_nodes
from plait.errors import DefinitionError


def validate_workflow(spec: WorkflowSpec) -> None:
    """Raise ``DefinitionError`` naming the node and input when the spec is inconsistent or cyclic."""
    owner = f"workflow '{spec.name}'"
    node_ids = {node.id for node in spec.nodes}
    if len(node_ids) != len(spec.nodes):
        raise DefinitionError(f"{owner}: node ids must be unique")
    graph: dict[str, set[str]] = {}
    for node in spec.nodes:
        task = spec.tasks.get(node.task)
        if task is None:
            raise DefinitionError(f"{owner}, node '{node.id}': unknown task '{node.task}'")
        for name, binding in node.inputs.items():
            if task.interface.input(name) is None:
                raise DefinitionError(f"{owner}, node '{node.id}': unknown input '{name}'")
            for upstream in upstream_nodes(binding):
                if upstream not in node_ids:
                    raise DefinitionError(f"{owner}, node '{node.id}': input '{name}' reads unknown node '{upstream}'")
        if node.map is not None and task.dynamic is True:
            raise DefinitionError(f"{owner}, node '{node.id}': a dynamic task cannot be mapped (loop in its body)")
        missing = [p.name for p in task.interface.inputs if p.required and p.name not in node.inputs]
        if missing:
            raise DefinitionError(f"{owner}, node '{node.id}': missing input {', '.join(map(repr, missing))}")
        graph[node.id] = set().union(*(upstream_nodes(b) for b in node.inputs.values()))
    try:
        tuple(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        cycle = " -> ".join(exc.args[1])
        raise DefinitionError(f"{owner}: the nodes form a cycle: {cycle}") from exc


MAX_VALUE_DEPTH = 64
"""How deeply a value given to plait (a launch's input, a result's output) may nest lists and mappings. Decoders
refuse data nested about a thousand levels deep: a bound well below keeps every record that holds a value readable."""


def nesting_problem(value: object, limit: int = MAX_VALUE_DEPTH) -> str | None:
    """Why ``value`` nests too deeply, or None. Walks containers only, and stops once past the limit."""
    level: list[object] = [value]
    depth = 0
    while level:
        containers = [item for item in level if isinstance(item, dict | list | tuple)]
        if not containers:
            return None
        depth += 1
        if depth > limit:
            return f"is nested more than {limit} levels deep; the limit is {limit}"
        level = [child for item in containers for child in (item.values() if isinstance(item, dict) else item)]
    return None
