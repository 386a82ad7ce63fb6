"""Checks of a workflow spec as a whole, for specs traced from Python and specs sent by any client."""

from __future__ import annotations

from graphlib import CycleError, TopologicalSorter

from plait.core.branches import branch_of, condition_upstream, guard_of, node_upstream
from plait.core.model import BranchSpec, ChildSpec, GateSpec, Guard, Node, WorkflowSpec, upstream_nodes
from plait.errors import DefinitionError


def node_id_problem(node_id: str) -> str | None:
    """Why ``node_id`` cannot name a node, or None. An attempt id is ``<execution>/<node>/<n>``, and a dispatch copy
    lists its attempt ids in a header, comma-separated: no '/', ',', whitespace or control character."""
    if not node_id:
        return "a node id may not be empty"
    if any(c in "/," or c.isspace() or not c.isprintable() for c in node_id):
        return f"node id {node_id!r} may not hold '/', ',', whitespace or control characters"
    return None


def validate_workflow(spec: WorkflowSpec) -> None:
    """Raise ``DefinitionError`` naming the node and input when the spec is inconsistent or cyclic."""
    owner = f"workflow '{spec.name}'"
    node_ids = {node.id for node in spec.nodes}
    if len(node_ids) != len(spec.nodes):
        raise DefinitionError(f"{owner}: node ids must be unique")
    for node_id in sorted(node_ids):
        if (problem := node_id_problem(node_id)) is not None:
            raise DefinitionError(f"{owner}: {problem}")
    signals = [node.gate.name for node in spec.nodes if isinstance(node.gate, GateSpec) and node.gate.name]
    if len(set(signals)) != len(signals):
        raise DefinitionError(f"{owner}: two gates wait for the same signal name ({', '.join(sorted(signals))})")
    graph: dict[str, set[str]] = {}
    for node in spec.nodes:
        where = f"{owner}, node '{node.id}'"
        if (guard := guard_of(node)) is not None:
            _check_guard(spec, guard, where)
        if (branch := branch_of(node)) is not None:
            _check_branch(branch, node_ids, where)
            graph[node.id] = node_upstream(node)
            continue
        if isinstance(node.gate, GateSpec):
            unknown = sorted(node_upstream(node) - node_ids)
            if unknown or set(node.inputs) - {"value"}:
                raise DefinitionError(f"{where}: a gate reads only its input 'value', of a known node")
            graph[node.id] = node_upstream(node)
            continue
        if isinstance(node.child, ChildSpec):
            _check_child(node.child, node, node_ids, where)
            graph[node.id] = node_upstream(node)
            continue
        task = spec.tasks.get(node.task)
        if task is None:
            raise DefinitionError(f"{where}: unknown task '{node.task}'")
        for name, binding in node.inputs.items():
            if task.interface.input(name) is None:
                raise DefinitionError(f"{where}: unknown input '{name}'")
            for upstream in upstream_nodes(binding):
                if upstream not in node_ids:
                    raise DefinitionError(f"{where}: input '{name}' reads unknown node '{upstream}'")
        if node.map is not None and task.dynamic is True:
            raise DefinitionError(f"{where}: a dynamic task cannot be mapped (loop in its body)")
        missing = [p.name for p in task.interface.inputs if p.required and p.name not in node.inputs]
        if missing:
            raise DefinitionError(f"{where}: missing input {', '.join(map(repr, missing))}")
        graph[node.id] = node_upstream(node)
    try:
        tuple(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        cycle = " -> ".join(exc.args[1])
        raise DefinitionError(f"{owner}: the nodes form a cycle: {cycle}") from exc


def _check_guard(spec: WorkflowSpec, guard: Guard, where: str) -> None:
    owner = next((n for n in spec.nodes if n.id == guard.branch), None)
    branch = branch_of(owner) if owner is not None else None
    if branch is None or not 0 <= guard.case < len(branch.cases):
        raise DefinitionError(f"{where}: is inside case {guard.case} of '{guard.branch}', which is no such branch case")


def _check_branch(branch: BranchSpec, node_ids: set[str], where: str) -> None:
    if not branch.cases:
        raise DefinitionError(f"{where}: a branch needs at least one case")
    names = {p.name for p in branch.outputs}
    for index, case in enumerate(branch.cases):
        if not case.fail and set(case.outputs) != names:
            raise DefinitionError(f"{where}, case {index}: its outputs differ from the branch's")
        read = condition_upstream(case.condition).union(*(upstream_nodes(b) for b in case.outputs.values()))
        unknown = sorted(read - node_ids)
        if unknown:
            raise DefinitionError(f"{where}, case {index}: reads unknown node {', '.join(map(repr, unknown))}")


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


def _check_child(child: ChildSpec, node: Node, node_ids: set[str], where: str) -> None:
    for name, binding in node.inputs.items():
        if child.interface.input(name) is None:
            raise DefinitionError(f"{where}: launch plan '{child.launch_plan}' has no input '{name}'")
        if unknown := sorted(upstream_nodes(binding) - node_ids):
            raise DefinitionError(f"{where}: input '{name}' reads unknown node '{unknown[0]}'")
