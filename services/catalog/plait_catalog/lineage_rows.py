"""Lineage rows: the artifacts and uses of each execution (``plait.core.lineage``), and the values they hold.
Pure functions, no I/O.

A batch folds each execution's events into an ``ExecutionLineage``. An execution launched in an earlier batch
starts from the node outputs its events read (``producers_read``), which the projection loads first; types come
from the interfaces of the workflow it was launched with.
"""

from __future__ import annotations

from typing import Any

import msgspec

from plait.core.events import Decision, ExecutionLaunched
from plait.core.lineage import Artifact, ExecutionLineage, Producer, producers_read
from plait.core.model import WorkflowSpec
from plait.core.types import TypeSpec
from plait.core.values import as_ref
from plait_catalog.known_workflows import KnownWorkflows, WorkflowKey
from plait_catalog.rows import ExecutionKey

NodeKey = tuple[str, str, str, str]  # (project, domain, execution_id, node_id)
_canonical = msgspec.json.Encoder(order="deterministic")


class ValueRow(msgspec.Struct, kw_only=True):
    hash: str
    value: Any
    size: int  # bytes of the value's canonical JSON encoding (of a value stored by reference: its stored size)


class ArtifactRow(msgspec.Struct, kw_only=True):
    project: str
    domain: str
    artifact_id: str
    execution_id: str
    node_id: str
    name: str
    producer: Producer
    attempt_id: str
    value_hash: str
    type: TypeSpec
    source_execution: str
    source_node: str


class UseRow(msgspec.Struct, kw_only=True):
    project: str
    domain: str
    execution_id: str
    node_id: str
    name: str
    artifact_id: str


class LaunchedWorkflowRow(msgspec.Struct, kw_only=True):
    project: str
    domain: str
    name: str
    version: str
    spec: WorkflowSpec


class Lineage(msgspec.Struct):
    """What one batch adds to the lineage tables: each execution's artifacts and uses, as folded so far.

    ``workflows`` and ``produced`` are what earlier batches left: the spec of each execution launched before, and
    the artifacts of the node outputs this batch's events read (by execution, then (node, output))."""

    known: KnownWorkflows = msgspec.field(default_factory=KnownWorkflows)
    workflows: dict[ExecutionKey, WorkflowSpec] = msgspec.field(default_factory=dict)
    produced: dict[ExecutionKey, dict[tuple[str, str], str]] = msgspec.field(default_factory=dict)
    executions: dict[ExecutionKey, ExecutionLineage] = msgspec.field(default_factory=dict)
    launched: dict[WorkflowKey, LaunchedWorkflowRow] = msgspec.field(default_factory=dict)

    def values(self) -> list[ValueRow]:
        found: dict[str, Any] = {}
        for execution in self.executions.values():
            for digest, value in execution.values.items():
                found.setdefault(digest, value)
        return [ValueRow(hash=h, value=v, size=_size(v)) for h, v in found.items()]

    def artifacts(self) -> list[ArtifactRow]:
        return [
            _artifact_row(key, artifact)
            for key, execution in self.executions.items()
            for artifact in execution.artifacts.values()
        ]

    def uses(self) -> list[UseRow]:
        return [
            UseRow(
                project=project,
                domain=domain,
                execution_id=use.execution_id,
                node_id=use.node,
                name=use.name,
                artifact_id=use.artifact_id,
            )
            for (project, domain, _), execution in self.executions.items()
            for use in execution.uses.values()
        ]


def _artifact_row(key: ExecutionKey, artifact: Artifact) -> ArtifactRow:
    project, domain, _ = key
    return ArtifactRow(
        project=project,
        domain=domain,
        artifact_id=artifact.id,
        execution_id=artifact.execution_id,
        node_id=artifact.node,
        name=artifact.name,
        producer=artifact.producer,
        attempt_id=artifact.attempt_id,
        value_hash=artifact.value_hash,
        type=artifact.type,
        source_execution=artifact.source_execution,
        source_node=artifact.source_node,
    )


def producers_to_load(
    workflows: dict[ExecutionKey, WorkflowSpec], decisions: list[tuple[ExecutionKey, Decision]]
) -> set[NodeKey]:
    """The nodes of executions launched in earlier batches whose output artifacts ``decisions`` read."""
    needed: set[NodeKey] = set()
    for execution, decision in decisions:
        if execution in workflows:
            project, domain, execution_id = execution
            for node in producers_read(workflows[execution], decision.events):
                needed.add((project, domain, execution_id, node))
    return needed


def apply_decision(lineage: Lineage, execution: ExecutionKey, decision: Decision) -> None:
    """Fold a decision's events into its execution's lineage; an execution never launched has none."""
    for event in decision.events:
        if isinstance(event, ExecutionLaunched):
            _launch(lineage, execution, event)
        folded = _execution(lineage, execution)
        if folded is not None:
            folded.apply(event)


def _execution(lineage: Lineage, execution: ExecutionKey) -> ExecutionLineage | None:
    folded = lineage.executions.get(execution)
    if folded is None and execution in lineage.workflows:
        workflow = lineage.workflows[execution]
        folded = lineage.executions[execution] = ExecutionLineage(
            execution[2],
            workflow,
            lineage.known.node_interfaces(execution[:2], workflow),
            lineage.produced.get(execution),
        )
    return folded


def _launch(lineage: Lineage, execution: ExecutionKey, event: ExecutionLaunched) -> None:
    workflow = event.workflow
    lineage.workflows[execution] = workflow
    lineage.executions.pop(execution, None)
    project, domain, _ = execution
    key = (project, domain, workflow.name, workflow.version)
    lineage.known.add(key, workflow)
    if key not in lineage.launched:
        lineage.launched[key] = LaunchedWorkflowRow(
            project=project, domain=domain, name=workflow.name, version=workflow.version, spec=workflow
        )


def _size(value: Any) -> int:
    ref = as_ref(value)
    return ref.size if ref is not None else len(_canonical.encode(value))
