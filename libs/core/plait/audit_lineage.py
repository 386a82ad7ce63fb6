"""Audit of lineage: its invariants over an execution's history (``check_lineage``), and the catalog's artifacts and
uses of an execution (its lineage graph at depth 0) against those a fresh derivation gives (``verify_lineage``),
both from ``plait.core.lineage``."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from plait.audit import Problem
from plait.core.events import Decision, NodeCacheHit, NodeSucceeded
from plait.core.ids import value_hash
from plait.core.lineage import Artifact, ExecutionLineage, bindings_of, item_place, lineage_of, reading
from plait.core.model import Binding, Collection, Mapping
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


def check_lineage(records: Iterable[Record]) -> list[Problem]:
    """Lineage's invariants over a whole history: each node that succeeded made one artifact per output (by the
    attempt that succeeded, or the cache hit), each input read, at each place of its binding, an artifact of this
    execution that holds the very value it got, and each artifact holds the value its producer gave."""
    history = [decision for _, decision in decisions(records)]
    lineage = lineage_of(history)
    if lineage is None:
        return []
    messages = [*_made(lineage, history), *_read(lineage, history)]
    return [Problem(kind="lineage", message=m, execution_id=lineage.execution_id) for m in messages]


def _made(lineage: ExecutionLineage, history: list[Decision]) -> Iterator[str]:
    made = {(a.node, a.name): a for a in lineage.artifacts.values() if a.producer != "constant"}
    traced = {node.id for node in lineage.workflow.nodes}  # the nodes a dynamic node generated are not traced yet
    for decision in history:
        for event in decision.events:
            if isinstance(event, NodeSucceeded | NodeCacheHit) and event.node in traced:
                attempt = event.attempt_id if isinstance(event, NodeSucceeded) else ""
                for name, value in event.outputs.items():
                    artifact = made.get((event.node, name))
                    if artifact is None:
                        yield f"node '{event.node}': output '{name}' is no artifact"
                    elif (artifact.attempt_id, artifact.value_hash) != (attempt, value_hash(value)):
                        yield f"node '{event.node}': output '{name}' is not the artifact its producer made"


def _read(lineage: ExecutionLineage, history: list[Decision]) -> Iterator[str]:
    """Each place a node (or the workflow's outputs) read, against the artifact its use names."""
    got: dict[str, dict[str, Any]] = {}
    for decision in history:
        for event in decision.events:
            if (read := reading(event)) is not None:
                got.setdefault(*read)
    bindings = bindings_of(lineage.workflow)
    for node, values in got.items():
        for name, binding in bindings.get(node, {}).items():
            if name not in values:
                continue
            for place, value in _places(name, binding, values[name]):
                use = lineage.uses.get((node, place))
                artifact = lineage.artifacts.get(use.artifact_id) if use is not None else None
                if artifact is None:
                    yield f"node '{node}': input '{place}' read no artifact"
                elif artifact.value_hash != value_hash(value):
                    yield f"node '{node}': input '{place}' got a value other than its artifact's"


def _places(name: str, binding: Binding, value: Any) -> Iterator[tuple[str, Any]]:
    """The places a binding reads, each with the part of ``value`` it gave."""
    match binding:
        case Collection(items=items) if isinstance(value, list) and len(value) == len(items):
            for index, item in enumerate(items):
                yield from _places(item_place(name, index), item, value[index])
        case Mapping(items=items) if isinstance(value, dict):
            for key, item in items.items():
                yield from _places(item_place(name, key), item, value.get(key))
        case _:
            yield name, value
