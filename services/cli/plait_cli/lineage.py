"""``plait lineage``: where an artifact or an execution's data came from and went, as a tree, JSON or DOT; and
``plait lineage --same-value``: the artifacts that hold the same value, as a table or JSON."""

from __future__ import annotations

import sys
from collections import defaultdict
from typing import Literal

from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from plait.client import ArtifactNode, LineageEdge, LineageGraph, NodeExecutionNode, SameValue
from plait.errors import InputError
from plait.protocol.lineage import Direction
from plait.settings import Settings
from plait_cli.catalog_session import catalog_client, console, print_json

Format = Literal["tree", "json", "dot"]
Vertex = ArtifactNode | NodeExecutionNode


async def show_lineage(
    settings: Settings, target: str, direction: Direction, depth: int, max_edges: int, output: Format
) -> int:
    async with catalog_client(settings) as (client, position):
        graph = await client.lineage(target, direction, depth, max_edges=max_edges, min_sequence=position)
    if graph.truncated:
        print(f"plait: the lineage has more than {max_edges} edges within {depth} steps; showing some", file=sys.stderr)
    if output == "json":
        print_json(graph)
    elif output == "dot":
        sys.stdout.write(to_dot(graph))
    else:
        console().print(to_tree(graph))
    return 0


async def show_same_value(settings: Settings, target: str, limit: int, output: Format) -> int:
    if output == "dot":
        raise InputError("--dot draws a lineage graph; --same-value lists artifacts (use --json or neither)")
    async with catalog_client(settings) as (client, position):
        found = await client.same_value(target, limit=limit, min_sequence=position)
    if found.truncated:
        print(f"plait: more than {limit} artifacts hold this value; showing {limit}", file=sys.stderr)
    if output == "json":
        print_json(found)
    else:
        console().print(same_value_table(found))
    return 0


def same_value_table(found: SameValue) -> Table:
    table = Table(box=None, title=f"value {found.hash}")
    for column in ("artifact", "execution", "node", "name", "made by", "type", "value"):
        table.add_column(column)
    for artifact in found.artifacts:
        table.add_row(
            artifact.id.removeprefix("artifact:"),
            artifact.execution_id,
            artifact.node or "(workflow)",
            artifact.name,
            _made_by(artifact),
            artifact.type,
            artifact.preview,
        )
    return table


def _made_by(artifact: ArtifactNode) -> str:
    if artifact.producer == "attempt":
        return f"attempt {artifact.attempt_id}"
    if artifact.producer == "cache":
        return f"cache hit of {artifact.source_execution}/{artifact.source_node}"
    return artifact.producer


def _label(vertex: Vertex) -> str:
    if isinstance(vertex, ArtifactNode):
        value = f" = {escape(vertex.preview)}" if vertex.preview else ""
        made = f" [dim]({escape(_made_by(vertex))})[/]"
        return f"[cyan]{vertex.id.removeprefix('artifact:')[:12]}[/] {escape(vertex.type)}{value}{made}"
    if vertex.node == "":
        return f"[bold]execution {escape(vertex.execution_id)}[/] {escape(vertex.task)} {vertex.status}"
    where = escape(f"{vertex.execution_id}/{vertex.node}")
    return f"[bold]{escape(vertex.task.rsplit('.', 1)[-1])}[/] [dim]{where}[/] {vertex.status}"


def to_tree(graph: LineageGraph) -> Tree:
    """The graph unfolded from its root: upstream (what it came from) and/or downstream (what it fed).

    An execution's root stands for all its nodes: its branches hold what any of them read or wrote."""
    vertices = {vertex.id: vertex for vertex in graph.nodes}
    sources: dict[str, list[tuple[str, str]]] = defaultdict(list)
    targets: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for edge in graph.edges:
        sources[edge.target].append((edge.source, _edge_name(edge)))
        targets[edge.source].append((edge.target, _edge_name(edge)))
    root = graph.root
    tree = Tree(_label(vertices[root]))
    walks = {"upstream": sources, "downstream": targets}
    if isinstance(top := vertices[root], NodeExecutionNode):
        for next_of in walks.values():
            next_of[root] = _of_whole_execution(next_of, top.execution_id, vertices)
    for direction in ("upstream", "downstream"):
        if graph.direction in (direction, "both"):
            branch = tree.add(f"[dim]{direction}[/]") if graph.direction == "both" else tree
            _grow(branch, root, walks[direction], vertices, {root})
    return tree


def _of_whole_execution(
    next_of: dict[str, list[tuple[str, str]]], execution_id: str, vertices: dict[str, Vertex]
) -> list[tuple[str, str]]:
    """The neighbours of every node of the execution, each once: named ``node.name``, or ``name`` for the
    workflow's own inputs and outputs."""
    found: dict[str, str] = {}
    members = [v for v in vertices.values() if isinstance(v, NodeExecutionNode) and v.execution_id == execution_id]
    for member in sorted(members, key=lambda v: v.node):
        for neighbour, name in next_of.get(member.id, []):
            found.setdefault(neighbour, f"{member.node}.{name}" if member.node else name)
    return list(found.items())


def _grow(
    branch: Tree, vertex: str, next_of: dict[str, list[tuple[str, str]]], vertices: dict[str, Vertex], shown: set[str]
) -> None:
    """Add each neighbour under ``branch``; a vertex already shown elsewhere is named, not unfolded again."""
    for neighbour, name in sorted(next_of.get(vertex, [])):
        label = f"[dim]{escape(name)}:[/] {_label(vertices[neighbour])}"
        if neighbour in shown:
            branch.add(f"{label} [dim](see above)[/]")
            continue
        shown.add(neighbour)
        _grow(branch.add(label), neighbour, next_of, vertices, shown)


def _edge_name(edge: LineageEdge) -> str:
    """An input or output name; ``cached <output>`` for a cache hit's link to the output it reused."""
    return f"cached {edge.name}" if edge.kind == "cached" else edge.name


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(graph: LineageGraph) -> str:
    """Graphviz: artifacts as boxes, node executions as ellipses, the root in bold, edges named."""
    lines = ["digraph lineage {", "  rankdir=LR;"]
    for vertex in graph.nodes:
        shape = "box" if isinstance(vertex, ArtifactNode) else "ellipse"
        if isinstance(vertex, ArtifactNode):
            text = f"{vertex.type}\n{vertex.preview}\n{_made_by(vertex)}"
        elif vertex.node:
            text = f"{vertex.task}\n{vertex.execution_id}/{vertex.node}"
        else:
            text = f"execution {vertex.execution_id}\n{vertex.task}"
        style = ", style=bold" if vertex.id == graph.root else ""
        lines.append(f"  {_quoted(vertex.id)} [shape={shape}, label={_quoted(text)}{style}];")
    for edge in graph.edges:
        lines.append(f"  {_quoted(edge.source)} -> {_quoted(edge.target)} [label={_quoted(_edge_name(edge))}];")
    lines.append("}")
    return "\n".join(lines) + "\n"
