"""The catalog's lineage query, ``plait.catalog.lineage``: a bipartite graph of artifacts and node executions."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from plait.protocol.queries import NonEmpty, StreamSequence

Direction = Literal["upstream", "downstream", "both"]


class LineageRequest(msgspec.Struct, frozen=True, kw_only=True):
    """``plait.catalog.lineage``: the graph around an artifact hash or an execution id, within one project and
    domain (an artifact is the same value in every one; an execution id names an execution in one only)."""

    project: NonEmpty
    domain: NonEmpty
    target: NonEmpty
    direction: Direction = "both"
    depth: Annotated[int, msgspec.Meta(ge=1, le=50)] = 3
    max_edges: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 5000  # a common value can link many executions
    min_sequence: StreamSequence = 0


class ArtifactNode(msgspec.Struct, kw_only=True, tag="artifact", tag_field="kind"):
    id: str
    hash: str
    type: str
    preview: str  # the start of its JSON text; '' when it is not stored inline
    size: int


class NodeExecutionNode(msgspec.Struct, kw_only=True, tag="node_execution", tag_field="kind"):
    id: str
    execution_id: str
    node: str  # '' for the workflow's own inputs and outputs
    task: str  # the task's name, or the workflow's for node ''
    status: str


class LineageEdge(msgspec.Struct, kw_only=True):
    source: str
    target: str
    name: str  # the input or output name


class LineageGraph(msgspec.Struct, kw_only=True):
    root: str
    direction: Direction
    depth: int
    nodes: list[ArtifactNode | NodeExecutionNode]
    edges: list[LineageEdge]
    truncated: bool  # the walk stopped at ``max_edges``, before ``depth``
