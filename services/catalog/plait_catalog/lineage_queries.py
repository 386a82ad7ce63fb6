"""Lineage: which node executions made which artifacts from which others, walked a bounded number of steps; and
the artifacts that hold the same value, asked for explicitly.

The graph is bipartite: an artifact is *produced* by the node execution that made it (node ``''`` of an
execution, for its inputs: the launch) and *used* by those that read it (node ``''``, for the workflow's
outputs); a cache hit's node execution also used, through the cache, the artifact it reuses (a *cached* edge:
the only way lineage crosses executions). One step upstream goes from a set of artifacts to the node
executions that made them, and on to what those used; downstream the reverse. Each step is one set-based
query; the walk never goes through node ``''``, which has inputs on one side and outputs on the other.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import msgspec

from plait.core.lineage import NODE_PRODUCERS
from plait.core.types import TypeSpec, describe
from plait.protocol.lineage import (
    ArtifactNode,
    EdgeKind,
    LineageEdge,
    LineageGraph,
    LineageRequest,
    NodeExecutionNode,
    SameValue,
    SameValueRequest,
)
from plait.protocol.queries import ErrorReply, error_reply
from plait_catalog.db import Connection

PREVIEW_CHARS = 60


class EdgeRow(NamedTuple):
    kind: EdgeKind
    artifact_id: str
    execution_id: str  # of the node execution
    node_id: str
    name: str


def artifact_vertex(artifact_id: str) -> str:
    return f"artifact:{artifact_id}"


def node_vertex(execution_id: str, node: str) -> str:
    return f"execution:{execution_id}" if node == "" else f"node:{execution_id}/{node}"


_HERE = "project = $1 AND domain = $2"  # every query is within the request's project and domain
_MADE_BY_NODES = f"producer IN {tuple(NODE_PRODUCERS)}"
_THE_SOURCE = """
s.project = c.project AND s.domain = c.domain AND s.execution_id = c.source_execution
AND s.node_id = c.source_node AND s.name = c.name"""

# From the frontier artifacts ($3) to the node executions that made them, and on to what those used.
_UPSTREAM = f"""
WITH made AS (
    SELECT artifact_id, execution_id, node_id, name FROM lineage_artifacts
    WHERE {_HERE} AND artifact_id = ANY($3::text[]) AND producer <> 'constant'
), makers AS (SELECT DISTINCT execution_id, node_id FROM made WHERE node_id <> '')
SELECT 'produced', artifact_id, execution_id, node_id, name FROM made
UNION ALL
SELECT 'used', u.artifact_id, u.execution_id, u.node_id, u.name
FROM lineage_uses AS u JOIN makers USING (execution_id, node_id) WHERE u.project = $1 AND u.domain = $2
UNION ALL
SELECT 'cached', s.artifact_id, c.execution_id, c.node_id, c.name
FROM lineage_artifacts AS c JOIN makers USING (execution_id, node_id)
JOIN lineage_artifacts AS s ON {_THE_SOURCE} AND s.{_MADE_BY_NODES}
WHERE c.project = $1 AND c.domain = $2 AND c.producer = 'cache'
LIMIT $4
"""  # noqa: S608  constant fragments (table and column names); values are $n parameters

# From the frontier artifacts ($3) to the node executions that used them (here, or through the cache in another
# execution), and on to what those made.
_DOWNSTREAM = f"""
WITH readers AS (
    SELECT 'used' AS kind, artifact_id, execution_id, node_id, name FROM lineage_uses
    WHERE {_HERE} AND artifact_id = ANY($3::text[])
    UNION ALL
    SELECT 'cached', s.artifact_id, c.execution_id, c.node_id, c.name
    FROM lineage_artifacts AS s JOIN lineage_artifacts AS c ON {_THE_SOURCE} AND c.producer = 'cache'
    WHERE s.project = $1 AND s.domain = $2 AND s.artifact_id = ANY($3::text[]) AND s.{_MADE_BY_NODES}
), through AS (SELECT DISTINCT execution_id, node_id FROM readers WHERE node_id <> '')
SELECT kind, artifact_id, execution_id, node_id, name FROM readers
UNION ALL
SELECT 'produced', a.artifact_id, a.execution_id, a.node_id, a.name
FROM lineage_artifacts AS a JOIN through USING (execution_id, node_id)
WHERE a.project = $1 AND a.domain = $2 AND a.producer <> 'constant'
LIMIT $4
"""  # noqa: S608  constant fragments (table and column names); values are $n parameters

_STEPS = {"upstream": _UPSTREAM, "downstream": _DOWNSTREAM}
_NEXT = {"upstream": ("used", "cached"), "downstream": ("produced",)}

_OF_EXECUTION = f"""
SELECT 'produced', artifact_id, execution_id, node_id, name FROM lineage_artifacts
WHERE {_HERE} AND execution_id = $3 AND producer <> 'constant'
UNION ALL
SELECT 'used', artifact_id, execution_id, node_id, name FROM lineage_uses WHERE {_HERE} AND execution_id = $3
"""  # noqa: S608  constant fragments (table and column names); values are $n parameters
_ARTIFACTS_OF_EXECUTION = f"SELECT artifact_id FROM lineage_artifacts WHERE {_HERE} AND execution_id = $3"  # noqa: S608  constant fragments (table and column names); values are $n parameters

# The preview is cut in the database, so a large value never travels whole; one more character tells it was cut.
_ARTIFACT_COLUMNS = """
a.artifact_id, a.execution_id, a.node_id, a.name, a.producer, a.attempt_id, a.value_hash, a.type,
a.source_execution, a.source_node, left(v.value::text, $4) AS preview, coalesce(v.size, 0) AS size
FROM lineage_artifacts AS a LEFT JOIN lineage_values AS v ON v.hash = a.value_hash"""
_ARTIFACTS = f"SELECT {_ARTIFACT_COLUMNS} WHERE a.project = $1 AND a.domain = $2 AND a.artifact_id = ANY($3::text[])"
_SAME_VALUE = f"""
SELECT {_ARTIFACT_COLUMNS}
WHERE a.project = $1 AND a.domain = $2 AND a.value_hash = $3 AND a.execution_id <> $5
ORDER BY a.execution_id DESC, a.node_id, a.name, a.artifact_id
LIMIT $6
"""

_NODE_EXECUTIONS = f"""
SELECT n.execution_id, n.node_id, n.task_name, n.status
FROM node_executions AS n JOIN unnest($3::text[], $4::text[]) AS k (execution_id, node_id) USING (execution_id, node_id)
WHERE n.project = $1 AND n.domain = $2
UNION ALL
SELECT execution_id, '', workflow_name, status FROM executions WHERE {_HERE} AND execution_id = ANY($5::text[])
"""  # noqa: S608  constant fragments (table and column names); values are $n parameters

_ARTIFACT = f"SELECT execution_id, value_hash FROM lineage_artifacts WHERE {_HERE} AND artifact_id = $3"  # noqa: S608  constant fragments (table and column names); values are $n parameters
_IS_VALUE = f"SELECT EXISTS (SELECT 1 FROM lineage_artifacts WHERE {_HERE} AND value_hash = $3)"  # noqa: S608  constant fragments (table and column names); values are $n parameters
_IS_EXECUTION = f"""
SELECT EXISTS (SELECT 1 FROM executions WHERE {_HERE} AND execution_id = $3)
    OR EXISTS (SELECT 1 FROM lineage_artifacts WHERE {_HERE} AND execution_id = $3)
"""  # noqa: S608  constant fragments (table and column names); values are $n parameters


async def lineage(connection: Connection, request: LineageRequest) -> LineageGraph | ErrorReply:
    """The graph around the target, up to ``depth`` steps in the requested direction(s)."""
    here = (request.project, request.domain)
    async with connection.transaction(isolation="repeatable_read", readonly=True):
        edges: set[EdgeRow] = set()
        if await connection.fetchrow(_ARTIFACT, *here, request.target) is not None:
            root = artifact_vertex(request.target)
            start = {request.target}
        elif await connection.fetchval(_IS_EXECUTION, *here, request.target):
            root = node_vertex(request.target, "")
            edges.update(EdgeRow(*row) for row in await connection.fetch(_OF_EXECUTION, *here, request.target))
            start = {row[0] for row in await connection.fetch(_ARTIFACTS_OF_EXECUTION, *here, request.target)}
        else:
            return await _not_a_target(connection, request.project, request.domain, request.target)
        truncated = False
        for direction in ("upstream", "downstream"):
            if request.direction in (direction, "both") and not truncated:
                budget = request.max_edges - len(edges)
                found, truncated = await _walk(connection, here, start, direction, request.depth, budget)
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


async def same_value(connection: Connection, request: SameValueRequest) -> SameValue | ErrorReply:
    """The artifacts that hold the value of the target: an artifact's (in other executions than its own) or a
    value hash's (in any)."""
    here = (request.project, request.domain)
    async with connection.transaction(isolation="repeatable_read", readonly=True):
        artifact = await connection.fetchrow(_ARTIFACT, *here, request.target)
        if artifact is not None:
            digest, own_execution = artifact["value_hash"], artifact["execution_id"]
        elif await connection.fetchval(_IS_VALUE, *here, request.target):
            digest, own_execution = request.target, ""
        else:
            where = f"{request.project}/{request.domain}"
            return error_reply("not_found", f"{request.target} is neither an artifact id nor a value hash in {where}")
        rows = await connection.fetch(_SAME_VALUE, *here, digest, PREVIEW_CHARS + 1, own_execution, request.limit + 1)
    return SameValue(
        hash=digest, artifacts=[_artifact(row) for row in rows[: request.limit]], truncated=len(rows) > request.limit
    )


async def _not_a_target(connection: Connection, project: str, domain: str, target: str) -> ErrorReply:
    where = f"{project}/{domain}"
    if await connection.fetchval(_IS_VALUE, project, domain, target):
        return error_reply(
            "not_found",
            f"{target} is a value's hash, not an artifact: lineage follows artifacts (ask which artifacts hold "
            "the value with `plait lineage --same-value`)",
        )
    return error_reply("not_found", f"{target} is neither an artifact id nor an execution id in {where}")


async def _walk(
    connection: Connection, here: tuple[str, str], start: set[str], direction: str, depth: int, budget: int
) -> tuple[set[EdgeRow], bool]:
    """The edges met within ``depth`` steps from the ``start`` artifacts (breadth-first, each artifact once), and
    whether the walk stopped early because it met more than ``budget`` edges."""
    found: set[EdgeRow] = set()
    seen, frontier = set(start), set(start)
    for _ in range(depth):
        if not frontier:
            break
        remaining = max(budget - len(found), 0)
        step = await connection.fetch(_STEPS[direction], *here, list(frontier), remaining + 1)
        rows = [EdgeRow(*row) for row in step]
        if len(rows) > remaining:
            found.update(rows[:remaining])
            return found, True
        found.update(rows)
        frontier = {row.artifact_id for row in rows if row.kind in _NEXT[direction]} - seen
        seen |= frontier
    return found, False


async def _describe(
    connection: Connection, here: tuple[str, str], edges: set[EdgeRow], root: str
) -> list[ArtifactNode | NodeExecutionNode]:
    """The graph's vertices (the root's too): artifacts with their value's type and preview, node executions with
    task and status."""
    kind, _, target = root.partition(":")
    artifact_ids = {e.artifact_id for e in edges} | ({target} if kind == "artifact" else set())
    pairs = sorted({(e.execution_id, e.node_id) for e in edges if e.node_id})
    workflows = sorted({e.execution_id for e in edges if not e.node_id} | ({target} if kind == "execution" else set()))
    rows = await connection.fetch(_ARTIFACTS, *here, sorted(artifact_ids), PREVIEW_CHARS + 1)
    nodes: list[ArtifactNode | NodeExecutionNode] = [_artifact(row) for row in rows]
    found = {
        (row["execution_id"], row["node_id"]): _node_execution(*row)
        for row in await connection.fetch(
            _NODE_EXECUTIONS, *here, [p[0] for p in pairs], [p[1] for p in pairs], workflows
        )
    }
    nodes += [found.get(key) or _node_execution(*key) for key in [*pairs, *((w, "") for w in workflows)]]
    nodes.sort(key=lambda n: n.id)
    return nodes


def _artifact(row: Any) -> ArtifactNode:
    return ArtifactNode(
        id=artifact_vertex(row["artifact_id"]),
        hash=row["value_hash"],
        type=_type_name(row["type"]),
        preview=_preview(row["preview"]),
        size=row["size"],
        execution_id=row["execution_id"],
        node=row["node_id"],
        name=row["name"],
        producer=row["producer"],
        attempt_id=row["attempt_id"],
        source_execution=row["source_execution"],
        source_node=row["source_node"],
    )


def _node_execution(execution_id: str, node: str, task: str = "", status: str = "") -> NodeExecutionNode:
    identity = node_vertex(execution_id, node)
    return NodeExecutionNode(id=identity, execution_id=execution_id, node=node, task=task, status=status)


def _edge(row: EdgeRow) -> LineageEdge:
    artifact, execution = artifact_vertex(row.artifact_id), node_vertex(row.execution_id, row.node_id)
    if row.kind == "produced":
        return LineageEdge(source=execution, target=artifact, name=row.name, kind=row.kind)
    return LineageEdge(source=artifact, target=execution, name=row.name, kind=row.kind)


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
