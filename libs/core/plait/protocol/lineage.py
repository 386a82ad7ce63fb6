"""The catalog's lineage queries: ``plait.catalog.lineage``, a bipartite graph of artifacts and node executions;
``plait.catalog.lineage.same_value``, the artifacts that hold a value."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from plait.protocol.queries import NonEmpty, StreamSequence

Direction = Literal["upstream", "downstream", "both"]
EdgeKind = Literal["used", "produced", "cached"]


class LineageRequest(msgspec.Struct, frozen=True, kw_only=True):
    """``plait.catalog.lineage``: the graph around an artifact id or an execution id, within one project and
    domain. Depth 0: the target alone (an execution's own artifacts and uses)."""

    project: NonEmpty
    domain: NonEmpty
    target: NonEmpty
    direction: Direction = "both"
    depth: Annotated[int, msgspec.Meta(ge=0, le=50)] = 3
    max_edges: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 5000
    min_sequence: StreamSequence = 0


class ArtifactNode(msgspec.Struct, kw_only=True, tag="artifact", tag_field="kind"):
    """One output of one producer in one execution (``plait.core.lineage``)."""

    id: str
    hash: str  # the value's content hash: equal values share it (``same_value``), artifacts do not
    type: str
    preview: str  # the start of its JSON text; '' when it is not stored inline
    size: int
    execution_id: str = ""
    node: str = ""  # '' for a workflow input; the reading node for a constant
    name: str = ""
    producer: str = ""  # launch, attempt, map, cache, constant, dynamic, branch, gate or child
    attempt_id: str = ""
    source_execution: str = ""  # producer cache: the execution and node whose output it was
    source_node: str = ""


class NodeExecutionNode(msgspec.Struct, kw_only=True, tag="node_execution", tag_field="kind"):
    id: str
    execution_id: str
    node: str  # '' for the workflow's own inputs and outputs
    task: str  # the task's name, or the workflow's for node ''
    status: str


class LineageEdge(msgspec.Struct, kw_only=True):
    source: str
    target: str
    name: str  # the input (or place in it) or output name
    kind: EdgeKind = "used"  # used: artifact → node; produced: node → artifact; cached: source artifact → hit node


class LineageGraph(msgspec.Struct, kw_only=True):
    root: str
    direction: Direction
    depth: int
    nodes: list[ArtifactNode | NodeExecutionNode]
    edges: list[LineageEdge]
    truncated: bool  # the walk stopped at ``max_edges``, before ``depth``


class SameValueRequest(msgspec.Struct, frozen=True, kw_only=True):
    """``plait.catalog.lineage.same_value``: the artifacts of one project and domain that hold the same value as
    ``target``, an artifact id (the others, in other executions) or a value hash (all of them)."""

    project: NonEmpty
    domain: NonEmpty
    target: NonEmpty
    limit: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 100
    min_sequence: StreamSequence = 0


class SameValue(msgspec.Struct, kw_only=True):
    hash: str
    artifacts: list[ArtifactNode]  # newest execution first
    truncated: bool  # more than ``limit`` hold it
