"""Audit of the catalog's lineage: an execution's artifacts and uses, as the catalog shows them (its lineage graph
at depth 0), against those a fresh derivation from its history gives (``plait.core.lineage``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from plait.audit import Problem
from plait.core.lineage import Artifact, lineage_of
from plait.core.types import describe
from plait.protocol.lineage import ArtifactNode, LineageGraph
from plait.replay import Record, decisions

MAX_EDGES = 100_000
"""The edges asked of the catalog: an execution with more is not compared (the graph says it was truncated)."""


def _node_vertex(execution_id: str, node: str) -> str:
    return f"execution:{execution_id}" if node == "" else f"node:{execution_id}/{node}"


def _expected(artifact: Artifact) -> tuple[Any, ...]:
    return (
        artifact.node,
        artifact.name,
        artifact.producer,
        artifact.attempt_id,
        artifact.value_hash,
        describe(artifact.type),
        artifact.source_execution,
        artifact.source_node,
    )


def _shown(vertex: ArtifactNode) -> tuple[Any, ...]:
    return (
        vertex.node,
        vertex.name,
        vertex.producer,
        vertex.attempt_id,
        vertex.hash,
        vertex.type,
        vertex.source_execution,
        vertex.source_node,
    )


def verify_lineage(records: Iterable[Record], graph: LineageGraph) -> list[Problem]:
    """Where the catalog's lineage of an execution (``client.lineage(execution_id, depth=0)``) differs from the
    one its records give: an artifact missing, extra or different, or an input that read another artifact."""
    lineage = lineage_of(decision for _, decision in decisions(records))
    if lineage is None or graph.truncated:
        return []
    execution_id = lineage.execution_id
    in_log = {f"artifact:{a.id}": _expected(a) for a in lineage.artifacts.values()}
    in_catalog = {
        v.id: _shown(v) for v in graph.nodes if isinstance(v, ArtifactNode) and v.execution_id == execution_id
    }
    read_in_log = {
        (f"artifact:{u.artifact_id}", _node_vertex(execution_id, u.node), u.name) for u in lineage.uses.values()
    }
    read_in_catalog = {(e.source, e.target, e.name) for e in graph.edges if e.kind == "used"}
    messages = [
        f"artifact {vertex}: catalog has {in_catalog.get(vertex)!r}, the log {in_log.get(vertex)!r}"
        for vertex in sorted(set(in_log) | set(in_catalog))
        if in_log.get(vertex) != in_catalog.get(vertex)
    ]
    messages += [f"use {use}: in the log, not in the catalog" for use in sorted(read_in_log - read_in_catalog)]
    messages += [f"use {use}: in the catalog, not in the log" for use in sorted(read_in_catalog - read_in_log)]
    return [Problem(kind="catalog_mismatch", message=m, execution_id=execution_id) for m in messages]
