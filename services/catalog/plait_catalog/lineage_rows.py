"""Lineage rows: each value a node or workflow read or wrote is an artifact named by its content hash,
tied by an edge to where it was read or written. Pure functions, no I/O.

The same value in two executions is one artifact, which is how lineage crosses executions: the edge that
wrote it in one and the edge that read it in the other name the same hash. An artifact's type comes from
the interface that first saw the value: the task's for node inputs and outputs, the workflow's for its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import msgspec

from plait.core.events import (
    Decision,
    ExecutionLaunched,
    ExecutionSucceeded,
    MapStarted,
    NodeCacheHit,
    NodeCacheLookup,
    NodeQueued,
    NodeSucceeded,
)
from plait.core.ids import artifact_hash
from plait.core.model import Interface, WorkflowSpec
from plait.core.types import Primitive, TypeSpec
from plait_catalog.known_workflows import KnownWorkflows, WorkflowKey

Direction = Literal["input", "output"]
EdgeKey = tuple[str, str, Direction, str]  # (execution_id, node_id, direction, name)

WORKFLOW_NODE = ""  # the node id of a workflow's own inputs and outputs
_UNKNOWN = Primitive("any")  # a value under a name its interface does not declare
_canonical = msgspec.json.Encoder(order="deterministic")


class ArtifactRow(msgspec.Struct, kw_only=True):
    hash: str
    type: TypeSpec
    value: Any
    size: int  # bytes of the value's canonical JSON encoding


class EdgeRow(msgspec.Struct, kw_only=True):
    artifact_hash: str
    execution_id: str
    node_id: str
    direction: Direction
    name: str


class LaunchedWorkflowRow(msgspec.Struct, kw_only=True):
    project: str
    domain: str
    name: str
    version: str
    spec: WorkflowSpec


class Lineage(msgspec.Struct):
    """What one batch adds to the lineage tables, and the workflows that type its values, by execution."""

    known: KnownWorkflows = msgspec.field(default_factory=KnownWorkflows)
    workflows: dict[str, WorkflowSpec] = msgspec.field(default_factory=dict)
    artifacts: dict[str, ArtifactRow] = msgspec.field(default_factory=dict)
    edges: dict[EdgeKey, EdgeRow] = msgspec.field(default_factory=dict)
    launched: dict[WorkflowKey, LaunchedWorkflowRow] = msgspec.field(default_factory=dict)

    def interface_of(self, execution_id: str, node_id: str) -> Interface:
        """The node's interface: its task's, or a map node's lists of them."""
        return self.known.node_interfaces(self.workflows[execution_id])[node_id]


def apply_decision(lineage: Lineage, decision: Decision) -> None:
    """Add the artifacts and edges of a decision's events; an execution never launched has none."""
    execution_id = decision.execution_id
    for event in decision.events:
        if isinstance(event, ExecutionLaunched):
            _launch(lineage, event)
        elif execution_id in lineage.workflows:
            _apply(lineage, execution_id, event)


def _launch(lineage: Lineage, event: ExecutionLaunched) -> None:
    workflow = event.workflow
    lineage.workflows[event.execution_id] = workflow
    key = (event.project, event.domain, workflow.name, workflow.version)
    lineage.known.add(key, workflow)
    if key not in lineage.launched:
        lineage.launched[key] = LaunchedWorkflowRow(
            project=event.project, domain=event.domain, name=workflow.name, version=workflow.version, spec=workflow
        )
    _values(lineage, event.execution_id, WORKFLOW_NODE, "input", event.inputs, workflow.interface)


def _apply(lineage: Lineage, execution_id: str, event: object) -> None:
    match event:
        case NodeQueued(index=index) if index >= 0:
            pass  # a map item's values are parts of the map node's inputs and outputs, which have their edges
        case (
            NodeQueued(node=node, inputs=inputs)
            | NodeCacheLookup(node=node, inputs=inputs)
            | MapStarted(node=node, inputs=inputs)
        ):
            _values(lineage, execution_id, node, "input", inputs, lineage.interface_of(execution_id, node))
        case NodeSucceeded(node=node, outputs=outputs) | NodeCacheHit(node=node, outputs=outputs):
            _values(lineage, execution_id, node, "output", outputs, lineage.interface_of(execution_id, node))
        case ExecutionSucceeded(outputs=outputs):
            interface = lineage.workflows[execution_id].interface
            _values(lineage, execution_id, WORKFLOW_NODE, "output", outputs, interface)


def _values(
    lineage: Lineage,
    execution_id: str,
    node_id: str,
    direction: Direction,
    values: Mapping[str, Any],
    interface: Interface,
) -> None:
    params = interface.inputs if direction == "input" else interface.outputs
    types = {param.name: param.type for param in params}
    for name, value in values.items():
        digest = artifact_hash(value)
        if digest not in lineage.artifacts:
            size = len(_canonical.encode(value))
            lineage.artifacts[digest] = ArtifactRow(hash=digest, type=types.get(name, _UNKNOWN), value=value, size=size)
        lineage.edges[execution_id, node_id, direction, name] = EdgeRow(
            artifact_hash=digest, execution_id=execution_id, node_id=node_id, direction=direction, name=name
        )
