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
from plait_catalog.rows import ExecutionKey

Direction = Literal["input", "output"]
EdgeKey = tuple[str, str, str, str, Direction, str]  # (project, domain, execution_id, node_id, direction, name)

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
    project: str
    domain: str
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


_GENERATED_NODE = Interface()


class Lineage(msgspec.Struct):
    """What one batch adds to the lineage tables, and the workflows that type its values, by execution."""

    known: KnownWorkflows = msgspec.field(default_factory=KnownWorkflows)
    workflows: dict[ExecutionKey, WorkflowSpec] = msgspec.field(default_factory=dict)
    artifacts: dict[str, ArtifactRow] = msgspec.field(default_factory=dict)
    edges: dict[EdgeKey, EdgeRow] = msgspec.field(default_factory=dict)
    launched: dict[WorkflowKey, LaunchedWorkflowRow] = msgspec.field(default_factory=dict)

    def interface_of(self, execution: ExecutionKey, node_id: str) -> Interface:
        """The node's interface: its task's, or a map node's lists of them; a node a dynamic node generated is not in
        the workflow, and its values are recorded untyped (unless an earlier record typed them)."""
        return self.known.node_interfaces(self.workflows[execution]).get(node_id, _GENERATED_NODE)


def apply_decision(lineage: Lineage, execution: ExecutionKey, decision: Decision) -> None:
    """Add the artifacts and edges of a decision's events; an execution never launched has none."""
    for event in decision.events:
        if isinstance(event, ExecutionLaunched):
            _launch(lineage, execution, event)
        elif execution in lineage.workflows:
            _apply(lineage, execution, event)


def _launch(lineage: Lineage, execution: ExecutionKey, event: ExecutionLaunched) -> None:
    workflow = event.workflow
    lineage.workflows[execution] = workflow
    project, domain, _ = execution
    key = (project, domain, workflow.name, workflow.version)
    lineage.known.add(key, workflow)
    if key not in lineage.launched:
        lineage.launched[key] = LaunchedWorkflowRow(
            project=project, domain=domain, name=workflow.name, version=workflow.version, spec=workflow
        )
    _values(lineage, execution, WORKFLOW_NODE, "input", event.inputs, workflow.interface)


def _apply(lineage: Lineage, execution: ExecutionKey, event: object) -> None:
    match event:
        case NodeQueued(index=index) if index >= 0:
            pass  # a map item's values are parts of the map node's inputs and outputs, which have their edges
        case (
            NodeQueued(node=node, inputs=inputs)
            | NodeCacheLookup(node=node, inputs=inputs)
            | MapStarted(node=node, inputs=inputs)
        ):
            _values(lineage, execution, node, "input", inputs, lineage.interface_of(execution, node))
        case NodeSucceeded(node=node, outputs=outputs) | NodeCacheHit(node=node, outputs=outputs):
            _values(lineage, execution, node, "output", outputs, lineage.interface_of(execution, node))
        case ExecutionSucceeded(outputs=outputs):
            interface = lineage.workflows[execution].interface
            _values(lineage, execution, WORKFLOW_NODE, "output", outputs, interface)


def _values(
    lineage: Lineage,
    execution: ExecutionKey,
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
        project, domain, execution_id = execution
        lineage.edges[project, domain, execution_id, node_id, direction, name] = EdgeRow(
            artifact_hash=digest,
            project=project,
            domain=domain,
            execution_id=execution_id,
            node_id=node_id,
            direction=direction,
            name=name,
        )
