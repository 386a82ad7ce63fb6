"""Lineage as artifacts: each output of each attempt is an artifact of its own, and each node input names the
artifact it read. Pure functions of an execution's events, no I/O.

An artifact is one output of one producer in one execution, identified by (execution, node, producer, output
name) and carrying its value's hash and type:

- ``launch``: a workflow input, an output of the execution's launch (node ``''``, named as the input);
- ``attempt``: a node's output, made by the attempt that succeeded (a failed attempt made nothing);
- ``map``: a map node's output, the list aggregated from its items (the items are not artifacts of their own);
- ``cache``: a node's output found in the cache: an artifact of this execution that names the execution and
  node it came from, which is how lineage crosses executions (explicitly, and only there);
- ``constant``: a constant a binding holds, local to the execution and to the node that reads it (node and
  name are the reader's: the input, or the place in it, such as ``xs[0]``).

A *use* says which artifact a node input read: tracing the node's binding, a ``FromNode`` reads the artifact the
upstream node made, a ``FromInput`` the launch's, a ``Constant`` its own. The workflow's outputs are uses of
node ``''``. Two executions that read equal values are not linked by lineage: that the same value exists
elsewhere is a separate question, asked by the value's hash (``value_hash``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

import msgspec

from plait.core.branches import interface_of_node, node_kind
from plait.core.dynamic import is_dynamic
from plait.core.events import (
    Decision,
    Event,
    ExecutionLaunched,
    ExecutionSucceeded,
    MapStarted,
    NodeCacheHit,
    NodeCacheLookup,
    NodeQueued,
    NodeSucceeded,
)
from plait.core.ids import content_version, value_hash
from plait.core.model import (
    Binding,
    Collection,
    Constant,
    FromInput,
    FromNode,
    Interface,
    WorkflowSpec,
    upstream_nodes,
)
from plait.core.model import (
    Mapping as MappingBinding,
)
from plait.core.types import DictOf, ListOf, Primitive, TypeSpec

Producer = Literal["launch", "attempt", "map", "cache", "constant", "dynamic", "branch", "gate", "child"]
NODE_PRODUCERS: tuple[Producer, ...] = ("attempt", "map", "cache")
"""The producers of a node's outputs: what a ``FromNode`` binding, or a cache hit elsewhere, reads."""

WORKFLOW = ""  # the node id of the launch (which makes the workflow's inputs) and of the workflow's outputs
UNKNOWN_TYPE = Primitive("any")  # a value under a name its interface does not declare


class Artifact(msgspec.Struct, frozen=True, kw_only=True):
    """One output of one producer in one execution (see the module's docstring)."""

    id: str
    execution_id: str
    node: str
    name: str
    producer: Producer
    attempt_id: str = ""  # the attempt that made it (producer ``attempt``)
    value_hash: str
    type: TypeSpec
    source_execution: str = ""  # producer ``cache``: the execution and node whose output it was
    source_node: str = ""


class Use(msgspec.Struct, frozen=True, kw_only=True):
    """Node ``node`` of an execution read ``artifact_id`` as its input ``name`` (or a place in it: ``xs[0]``,
    ``cfg["a"]``); node ``''`` reads the workflow's outputs."""

    execution_id: str
    node: str
    name: str
    artifact_id: str


def artifact_id(execution_id: str, node: str, producer: str, name: str) -> str:
    """The id of an artifact: a hash of where it was made. ``producer`` is the attempt id for an attempt's output,
    ``cache:<source execution>/<source node>`` for a cache hit's, else the producer's kind."""
    return content_version("artifact", execution_id, node, producer, name)


def launch_artifact_id(execution_id: str, name: str) -> str:
    return artifact_id(execution_id, WORKFLOW, "launch", name)


def bindings_of(workflow: WorkflowSpec) -> dict[str, dict[str, Binding]]:
    """What each node reads, by input; and, as node ``''``, what the workflow's outputs read."""
    return {node.id: node.inputs for node in workflow.nodes} | {WORKFLOW: workflow.outputs}


def reading(event: Event) -> tuple[str, dict[str, Any]] | None:
    """The node an event shows reading its inputs, with the values it got: a node queued (not a map item: its
    inputs are parts of its map node's, read once), looked up in the cache, or a map started; node ``''`` with the
    workflow's outputs when it succeeded."""
    match event:
        case NodeQueued(index=index) if index >= 0:
            return None
        case (
            NodeQueued(node=node, inputs=inputs)
            | NodeCacheLookup(node=node, inputs=inputs)
            | MapStarted(node=node, inputs=inputs)
        ):
            return node, inputs
        case ExecutionSucceeded(outputs=outputs):
            return WORKFLOW, outputs
    return None


def item_place(name: str, key: int | str) -> str:
    """Where an item of a fan-in binding is read: ``xs[0]`` for a list's, ``cfg["a"]`` for a dict's."""
    return f"{name}[{key}]" if isinstance(key, int) else f"{name}[{msgspec.json.encode(key).decode()}]"


def item_type(spec: TypeSpec) -> TypeSpec:
    """The type of a list's items or a dict's values: what one item of a fan-in binding holds."""
    match spec:
        case ListOf(item=item):
            return item
        case DictOf(value=value):
            return value
    return UNKNOWN_TYPE


class ExecutionLineage:
    """The artifacts and uses of one execution, gathered event by event (``apply``).

    ``produced`` holds the node outputs made before the first event applied here, as (node, output) → artifact
    id: a ``FromNode`` binding reads the one its node made. An execution's events seen from its launch need none.
    ``values`` holds each value met, by hash.
    """

    def __init__(
        self,
        execution_id: str,
        workflow: WorkflowSpec,
        interfaces: Mapping[str, Interface] | None = None,
        produced: Mapping[tuple[str, str], str] | None = None,
    ) -> None:
        self.execution_id = execution_id
        self.workflow = workflow
        self._nodes = {node.id: node for node in workflow.nodes}
        self._bindings = bindings_of(workflow)
        self._interfaces = (
            interfaces
            if interfaces is not None
            else {node.id: interface_of_node(workflow, node) for node in workflow.nodes}
        )
        self._tasks = workflow.tasks
        self._produced: dict[tuple[str, str], str] = dict(produced or {})
        self._read: set[str] = set()
        self.artifacts: dict[str, Artifact] = {}
        self.uses: dict[tuple[str, str], Use] = {}
        self.values: dict[str, Any] = {}

    def apply(self, event: Event) -> None:
        if (read := reading(event)) is not None:
            self._read_inputs(read[0])
            return
        match event:
            case ExecutionLaunched(inputs=inputs):
                types = {param.name: param.type for param in self.workflow.interface.inputs}
                for name, value in inputs.items():
                    self._add(WORKFLOW, name, "launch", "launch", value, types.get(name, UNKNOWN_TYPE))
            case NodeSucceeded(node=node, attempt_id=attempt, outputs=outputs) if node in self._nodes:
                producer = self._producer(node, attempt)
                self._outputs(node, producer, attempt if producer == "attempt" else producer, outputs, attempt)
            case NodeCacheHit(node=node, outputs=outputs, source_execution=execution, source_node=source):
                if node in self._nodes:
                    self._outputs(node, "cache", f"cache:{execution}/{source}", outputs, "", execution, source)

    def _producer(self, node: str, attempt: str) -> Producer:
        if attempt:
            return "attempt"
        spec = self._nodes[node]
        match node_kind(spec):
            case "branch":
                return "branch"  # the taken case's outputs
            case "child":
                return "child"  # the outputs of the child execution it launched
            case "task":
                return "dynamic" if is_dynamic(self._tasks[spec.task]) else "map"
        return "gate"  # a signal's value, or the value an approval or a sleep passed on

    def _read_inputs(self, node: str) -> None:
        """Record what ``node`` read (the first time it shows it), tracing each of its bindings."""
        if node in self._read or node not in self._bindings:
            return
        self._read.add(node)
        params = self.workflow.interface.outputs if node == WORKFLOW else self._interfaces[node].inputs
        types = {param.name: param.type for param in params}
        for name, binding in self._bindings[node].items():
            self._trace(node, name, binding, types.get(name, UNKNOWN_TYPE))

    def _outputs(
        self,
        node: str,
        producer: Producer,
        made_by: str,
        outputs: Mapping[str, Any],
        attempt: str,
        source_execution: str = "",
        source_node: str = "",
    ) -> None:
        types = {param.name: param.type for param in self._interfaces[node].outputs}
        for name, value in outputs.items():
            type_ = types.get(name, UNKNOWN_TYPE)
            source = {"source_execution": source_execution, "source_node": source_node}
            self._produced[node, name] = self._add(node, name, producer, made_by, value, type_, attempt, **source).id

    def _add(
        self,
        node: str,
        name: str,
        producer: Producer,
        made_by: str,
        value: Any,
        type_: TypeSpec,
        attempt: str = "",
        source_execution: str = "",
        source_node: str = "",
    ) -> Artifact:
        digest = value_hash(value)
        self.values.setdefault(digest, value)
        made = Artifact(
            id=artifact_id(self.execution_id, node, made_by, name),
            execution_id=self.execution_id,
            node=node,
            name=name,
            producer=producer,
            attempt_id=attempt,
            value_hash=digest,
            type=type_,
            source_execution=source_execution,
            source_node=source_node,
        )
        self.artifacts[made.id] = made
        return made

    def _trace(self, node: str, name: str, binding: Binding, type_: TypeSpec) -> None:
        """Record the artifacts ``binding`` reads as input ``name`` of ``node`` (a place in it, for fan-in)."""
        match binding:
            case FromInput(name=launched):
                self._use(node, name, launch_artifact_id(self.execution_id, launched))
            case FromNode(node=upstream, output=output):
                made = self._produced.get((upstream, output))
                if made is not None:
                    self._use(node, name, made)
            case Constant(value=value):
                constant = self._add(node, name, "constant", "constant", value, type_)
                self._use(node, name, constant.id)
            case Collection(items=items):
                for index, item in enumerate(items):
                    self._trace(node, item_place(name, index), item, item_type(type_))
            case MappingBinding(items=items):
                for key, item in items.items():
                    self._trace(node, item_place(name, key), item, item_type(type_))

    def _use(self, node: str, name: str, artifact: str) -> None:
        self.uses[node, name] = Use(execution_id=self.execution_id, node=node, name=name, artifact_id=artifact)


def producers_read(workflow: WorkflowSpec, events: Iterable[Event]) -> set[str]:
    """The upstream nodes whose outputs ``events`` read: the nodes that ``FromNode`` bindings of the nodes they
    start (and of the workflow's outputs, when it succeeds) name."""
    bindings = bindings_of(workflow)
    upstream: set[str] = set()
    for event in events:
        if (read := reading(event)) is not None and read[0] in bindings:
            upstream |= set().union(*(upstream_nodes(b) for b in bindings[read[0]].values()))
    return upstream


def lineage_of(decisions: Iterable[Decision]) -> ExecutionLineage | None:
    """The artifacts and uses of a whole history (its decisions in order); None if it never launched."""
    lineage: ExecutionLineage | None = None
    for decision in decisions:
        for event in decision.events:
            if isinstance(event, ExecutionLaunched) and lineage is None:
                lineage = ExecutionLineage(event.execution_id, event.workflow)
            if lineage is not None:
                lineage.apply(event)
    return lineage
