"""Lineage: which node executions made an artifact from which others, walked a bounded number of steps.

The graph is bipartite: an artifact is an *input* of the node executions that read it and an *output*
of those that wrote it; node ``''`` of an execution stands for the workflow itself (its inputs and
outputs). One step upstream goes from a set of artifacts to the node executions that output them, and
on to their inputs; downstream the reverse. Each step is one set-based query.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import msgspec

from plait.core.types import TypeSpec, describe
from plait.protocol.lineage import ArtifactNode, LineageEdge, LineageGraph, LineageRequest, NodeExecutionNode
from plait.protocol.queries import ErrorReply, error_reply
from plait_catalog.db import Connection

PREVIEW_CHARS = 60


class EdgeRow(NamedTuple):
    artifact_hash: str
    execution_id: str
    node_id: str
    direction: str
    name: str


def artifact_id(hash_: str) -> str:
    return f"artifact:{hash_}"


def node_id(execution_id: str, node: str) -> str:
    return f"execution:{execution_id}" if node == "" else f"node:{execution_id}/{node}"


_EDGE_COLUMNS = "artifact_hash, execution_id, node_id, direction, name"
_HERE = "project = $1 AND domain = $2"  # every query is within the request's project and domain

# $4 is the direction that joins the frontier to the node executions of this step, $5 the one beyond them.
_STEP = f"""
WITH near AS (
    SELECT {_EDGE_COLUMNS} FROM lineage_edges WHERE {_HERE} AND artifact_hash = ANY($3::text[]) AND direction = $4
)
SELECT {_EDGE_COLUMNS} FROM near
UNION
SELECT e.artifact_hash, e.execution_id, e.node_id, e.direction, e.name
FROM lineage_edges AS e JOIN (SELECT DISTINCT execution_id, node_id FROM near) AS n USING (execution_id, node_id)
WHERE e.project = $1 AND e.domain = $2 AND e.direction = $5
LIMIT $6
"""

_OF_EXECUTION = f"SELECT {_EDGE_COLUMNS} FROM lineage_edges WHERE {_HERE} AND execution_id = $3"

# The preview is cut in the database, so a large value never travels whole; one more character tells it was cut.
_ARTIFACTS = "SELECT hash, type, left(value::text, $2) AS preview, size FROM artifacts WHERE hash = ANY($1::text[])"

_NODE_EXECUTIONS = f"""
SELECT n.execution_id, n.node_id, n.task_name, n.status
FROM node_executions AS n JOIN unnest($3::text[], $4::text[]) AS k (execution_id, node_id) USING (execution_id, node_id)
WHERE n.project = $1 AND n.domain = $2
UNION ALL
SELECT execution_id, '', workflow_name, status FROM executions WHERE {_HERE} AND execution_id = ANY($5::text[])
"""

_IS_ARTIFACT = "SELECT EXISTS (SELECT 1 FROM artifacts WHERE hash = $1)"  # a value is the same in every project
_IS_EXECUTION = f"""
SELECT EXISTS (SELECT 1 FROM executions WHERE {_HERE} AND execution_id = $3)
    OR EXISTS (SELECT 1 FROM lineage_edges WHERE {_HERE} AND execution_id = $3)
"""

_STEPS = {"upstream": ("output", "input"), "downstream": ("input", "output")}


async def lineage(connection: Connection, request: LineageRequest) -> LineageGraph | ErrorReply:
    """The graph around the target, up to ``depth`` steps in the requested direction(s)."""
    here = (request.project, request.domain)
    async with connection.transaction(isolation="repeatable_read", readonly=True):
        edges: set[EdgeRow] = set()
        if await connection.fetchval(_IS_ARTIFACT, request.target):
            root = artifact_id(request.target)
            starts = {"upstream": {request.target}, "downstream": {request.target}}
        elif await connection.fetchval(_IS_EXECUTION, *here, request.target):
            root = node_id(request.target, "")
            edges.update(EdgeRow(*row) for row in await connection.fetch(_OF_EXECUTION, *here, request.target))
            starts = {
                "upstream": {e.artifact_hash for e in edges if e.direction == "input"},
                "downstream": {e.artifact_hash for e in edges if e.direction == "output"},
            }
        else:
            where = f"{request.project}/{request.domain}"
            return error_reply(
                "not_found", f"{request.target} is neither an artifact hash nor an execution id in {where}"
            )
        truncated = False
        for direction in ("upstream", "downstream"):
            if request.direction in (direction, "both") and not truncated:
                budget = request.max_edges - len(edges)
                found, truncated = await _walk(connection, here, starts[direction], direction, request.depth, budget)
                edges |= found
        nodes = await _describe(connection, here, edges, root)
    return LineageGraph(
        root=root,
        direction=request.direction,
        depth=request.depth,
        nodes=nodes,
        edges=sorted((_edge(e) for e in edges), key=lambda e: (e.source, e.target, e.name)),
        truncated=truncated,
    )


async def _walk(
    connection: Connection, here: tuple[str, str], start: set[str], direction: str, depth: int, budget: int
) -> tuple[set[EdgeRow], bool]:
    """The edges met within ``depth`` steps from the ``start`` artifacts (breadth-first, each artifact once), and
    whether the walk stopped early because it met more than ``budget`` edges."""
    near, far = _STEPS[direction]
    found: set[EdgeRow] = set()
    seen, frontier = set(start), set(start)
    for _ in range(depth):
        if not frontier:
            break
        remaining = max(budget - len(found), 0)
        step = await connection.fetch(_STEP, *here, list(frontier), near, far, remaining + 1)
        rows = [EdgeRow(*row) for row in step]
        if len(rows) > remaining:
            found.update(rows[:remaining])
            return found, True
        found.update(rows)
        frontier = {row.artifact_hash for row in rows if row.direction == far} - seen
        seen |= frontier
    return found, False


async def _describe(
    connection: Connection, here: tuple[str, str], edges: set[EdgeRow], root: str
) -> list[ArtifactNode | NodeExecutionNode]:
    """The graph's vertices (the root's too): artifacts with type and preview, node executions with task and
    status."""
    kind, _, target = root.partition(":")
    hashes = {e.artifact_hash for e in edges} | ({target} if kind == "artifact" else set())
    pairs = sorted({(e.execution_id, e.node_id) for e in edges if e.node_id})
    workflows = sorted({e.execution_id for e in edges if not e.node_id} | ({target} if kind == "execution" else set()))
    nodes: list[ArtifactNode | NodeExecutionNode] = [
        ArtifactNode(
            id=artifact_id(row["hash"]),
            hash=row["hash"],
            type=_type_name(row["type"]),
            preview=_preview(row["preview"]),
            size=row["size"],
        )
        for row in await connection.fetch(_ARTIFACTS, sorted(hashes), PREVIEW_CHARS + 1)
    ]
    found = {
        (row["execution_id"], row["node_id"]): _node_execution(*row)
        for row in await connection.fetch(
            _NODE_EXECUTIONS, *here, [p[0] for p in pairs], [p[1] for p in pairs], workflows
        )
    }
    nodes += [found.get(key) or _node_execution(*key) for key in [*pairs, *((w, "") for w in workflows)]]
    nodes.sort(key=lambda n: n.id)
    return nodes


def _node_execution(execution_id: str, node: str, task: str = "", status: str = "") -> NodeExecutionNode:
    identity = node_id(execution_id, node)
    return NodeExecutionNode(id=identity, execution_id=execution_id, node=node, task=task, status=status)


def _edge(row: EdgeRow) -> LineageEdge:
    artifact, execution = artifact_id(row.artifact_hash), node_id(row.execution_id, row.node_id)
    if row.direction == "input":
        return LineageEdge(source=artifact, target=execution, name=row.name)
    return LineageEdge(source=execution, target=artifact, name=row.name)


def _type_name(spec: Any) -> str:
    try:
        return describe(msgspec.convert(spec, TypeSpec))
    except msgspec.ValidationError:
        return msgspec.json.encode(spec).decode()


def _preview(text: str | None) -> str:
    """The start of the value's JSON; '' when it is not stored inline."""
    if text is None:
        return ""
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"
