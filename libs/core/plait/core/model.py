"""Registered entities: task and workflow specs, their interfaces, nodes and bindings."""

from __future__ import annotations

from collections import abc
from typing import Any, Literal

import msgspec

from plait.core.kubernetes_options import KubernetesOptions
from plait.core.notifications import Notify
from plait.core.schedules import Schedule
from plait.core.types import ListOf, OptionalOf, TypeSpec


class Param(msgspec.Struct, frozen=True):
    """One named input or output of an interface."""

    name: str
    type: TypeSpec
    default: Any = msgspec.UNSET  # an input with a default may be left out at launch

    @property
    def required(self) -> bool:
        return self.default is msgspec.UNSET


class Interface(msgspec.Struct, frozen=True):
    inputs: tuple[Param, ...] = ()
    outputs: tuple[Param, ...] = ()

    def input(self, name: str) -> Param | None:
        return next((p for p in self.inputs if p.name == name), None)

    def output(self, name: str) -> Param | None:
        return next((p for p in self.outputs if p.name == name), None)


class TaskTarget(msgspec.Struct, frozen=True):
    """Where the task's code lives: a module (and the file it was loaded from) and a qualified name."""

    module: str
    qualname: str
    file: str | None = None


EntityKind = Literal["task", "workflow", "launch_plan"]


class EntityRef(msgspec.Struct, frozen=True):
    """An entity is identified by (project, domain, kind, name, version)."""

    project: str
    domain: str
    kind: EntityKind
    name: str
    version: str

    def __str__(self) -> str:
        return f"{self.kind} {self.project}/{self.domain}/{self.name}@{self.version}"


DEFAULT_SYSTEM_RETRIES = 3
"""Retries of a task's attempts that failed for the system's reasons, unless the task sets its own."""


class TaskSpec(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    version: str
    interface: Interface
    target: TaskTarget
    retries: int = 0  # for the task's own failures: an exception, bad outputs, a timeout
    system_retries: int = DEFAULT_SYSTEM_RETRIES  # for the system's: a lost worker, a passed deadline
    retry_delay_seconds: float = 0.0  # before the first retry; each later retry waits twice as long as the last
    queue: str = "default"
    timeout_seconds: float | None = None  # an attempt running longer fails ("timed out"), and may be retried
    cache: bool = False
    cache_version: str = ""
    # UNSET (not None) when the task sets none: left out of the encoding, so such specs and versions are unchanged.
    kubernetes: KubernetesOptions | msgspec.UnsetType = msgspec.UNSET
    # True for a ``@dynamic`` task, whose attempt generates a sub-DAG (see plait.core.dynamic); UNSET otherwise.
    dynamic: bool | msgspec.UnsetType = msgspec.UNSET
    cluster: str | msgspec.UnsetType = msgspec.UNSET  # where its attempts run; UNSET: see plait.core.clusters
    # the labels of the executors it runs on, in place of a cluster's name (see plait.core.selectors); UNSET: none
    cluster_selector: dict[str, str] | msgspec.UnsetType = msgspec.UNSET
    # The names of the secrets its attempts read (plait.secrets), never their values; UNSET when it reads none.
    secrets: tuple[str, ...] | msgspec.UnsetType = msgspec.UNSET


class FromInput(msgspec.Struct, frozen=True, tag="input"):
    """The value of a workflow input."""

    name: str


class FromNode(msgspec.Struct, frozen=True, tag="node"):
    """An output of an upstream node."""

    node: str
    output: str


class Constant(msgspec.Struct, frozen=True, tag="constant"):
    value: Any


class Collection(msgspec.Struct, frozen=True, tag="list"):
    """A list whose items are bound one by one: how fan-in is written."""

    items: tuple[Binding, ...]


class Mapping(msgspec.Struct, frozen=True, tag="dict"):
    items: dict[str, Binding]


Binding = FromInput | FromNode | Constant | Collection | Mapping

FailurePolicy = Literal["fail_fast", "finish"]
"""What a workflow's execution does when a node fails: ``fail_fast`` fails it at once and stops its running
attempts; ``finish`` runs on every node that does not depend on the failed one, skips those that do, and fails it
once nothing can run any more."""


class MapOptions(msgspec.Struct, frozen=True, kw_only=True):
    """A node that runs its task once per item of the lists bound to ``over`` (the other inputs are the same
    for every item); its outputs are lists, item by item, with None for the items that failed."""

    over: tuple[str, ...]
    concurrency: int = 0  # items running at once; 0: as many as the executors take (up to MAX_MAP_BURST queued)
    min_success_ratio: float = 1.0  # below it, the node fails


ComparisonOperator = Literal["==", "!=", "<", "<=", ">", ">="]


class Comparison(msgspec.Struct, frozen=True, tag="compare"):
    """``left <op> right``, each a workflow input, a node's output or a constant."""

    op: ComparisonOperator
    left: Binding
    right: Binding


class AllOf(msgspec.Struct, frozen=True, tag="all"):
    """True when every one of ``items`` is (``a & b``)."""

    items: tuple[Condition, ...]


class AnyOf(msgspec.Struct, frozen=True, tag="any"):
    """True when one of ``items`` is (``a | b``)."""

    items: tuple[Condition, ...]


Condition = Comparison | AllOf | AnyOf


class Case(msgspec.Struct, frozen=True, kw_only=True):
    """One case of a branch: taken when ``condition`` holds (None: the ``else``), its outputs bound to its nodes';
    a case with ``fail`` set fails the branch with that message instead."""

    condition: Condition | None = None
    outputs: dict[str, Binding] = {}
    fail: str = ""


class BranchSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A conditional: the first case whose condition holds is taken, its nodes run, and the others' are skipped.
    The branch node's outputs are the taken case's."""

    cases: tuple[Case, ...]
    outputs: tuple[Param, ...] = ()


class Guard(msgspec.Struct, frozen=True):
    """A node inside case ``case`` of branch node ``branch``: it runs only if that case is taken."""

    branch: str
    case: int


GateKind = Literal["signal", "approve", "sleep"]


class GateSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A node that waits instead of running a task: for a signal named ``name`` (its value, of ``type``, is the
    node's output), for an approval of the value bound to its input ``value`` (passed on once approved), or for
    ``seconds`` (a sleep, passing on ``value`` if bound). A signal or approval not given within
    ``timeout_seconds`` fails the node."""

    kind: GateKind
    name: str = ""
    type: TypeSpec | None = None  # of the node's output, if it has one
    timeout_seconds: float | None = None
    seconds: float = 0.0


class ChildSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A node that launches registered launch plan ``launch_plan`` (at ``version``) as a child execution, its inputs
    the node's; the node's outputs are the child's, typed by its workflow's ``interface``."""

    launch_plan: str
    version: str
    workflow: str
    interface: Interface


class Node(msgspec.Struct, frozen=True):
    id: str
    task: str  # a key of WorkflowSpec.tasks ("" for a node that runs no task: a branch)
    inputs: dict[str, Binding]
    map: MapOptions | None = None
    # UNSET (not None) on plain task nodes: left out of the encoding, so existing specs and versions are unchanged.
    branch: BranchSpec | msgspec.UnsetType = msgspec.UNSET
    guard: Guard | msgspec.UnsetType = msgspec.UNSET
    gate: GateSpec | msgspec.UnsetType = msgspec.UNSET
    child: ChildSpec | msgspec.UnsetType = msgspec.UNSET


class WorkflowSpec(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    version: str
    interface: Interface
    nodes: tuple[Node, ...]
    outputs: dict[str, Binding]
    tasks: dict[str, TaskSpec]
    timeout_seconds: float | None = None  # an execution running longer fails
    # UNSET (not None) for fail_fast, the default: left out of the encoding, so such specs and versions are unchanged.
    failure_policy: FailurePolicy | msgspec.UnsetType = msgspec.UNSET
    notify: Notify | msgspec.UnsetType = msgspec.UNSET  # unset: not encoded, so older versions keep their hash
    cluster: str | msgspec.UnsetType = msgspec.UNSET  # the cluster of its tasks that name none (UNSET: none)
    # The content hash of the workflow's source bundle in the code bucket, when registered with one (fast
    # registration): workers import its tasks from that bundle. UNSET for the others, whose specs are unchanged.
    code_bundle: str | msgspec.UnsetType = msgspec.UNSET
    cluster_selector: dict[str, str] | msgspec.UnsetType = msgspec.UNSET  # in place of ``cluster`` (UNSET: none)

    @property
    def finishes_on_failure(self) -> bool:
        """Whether a failed node leaves the nodes that do not depend on it running (``failure_policy="finish"``)."""
        return self.failure_policy == "finish"


class LaunchPlanSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A named way to launch one workflow version: inputs it defaults, and inputs it fixes for good."""

    name: str
    version: str
    workflow: str
    workflow_version: str
    default_inputs: dict[str, Any] = {}
    fixed_inputs: dict[str, Any] = {}
    schedule: Schedule | msgspec.UnsetType = msgspec.UNSET  # unset: not encoded, so older versions keep their hash
    notify: Notify | msgspec.UnsetType = msgspec.UNSET
    cluster: str | msgspec.UnsetType = msgspec.UNSET  # where its executions run (above the workflow's choice)
    cluster_selector: dict[str, str] | msgspec.UnsetType = msgspec.UNSET  # in place of ``cluster`` (UNSET: none)


def upstream_nodes(binding: Binding) -> set[str]:
    """The ids of the nodes a binding reads from."""
    match binding:
        case FromNode(node=node):
            return {node}
        case Collection(items=items):
            return set().union(*(upstream_nodes(b) for b in items)) if items else set()
        case Mapping(items=items):
            return set().union(*(upstream_nodes(b) for b in items.values())) if items else set()
    return set()


def resolve(binding: Binding, inputs: abc.Mapping[str, Any], outputs: abc.Mapping[str, abc.Mapping[str, Any]]) -> Any:
    """The value of ``binding``, given the workflow's inputs and the outputs of finished nodes."""
    match binding:
        case FromInput(name=name):
            return inputs[name]
        case FromNode(node=node, output=output):
            return outputs[node][output]
        case Constant(value=value):
            return value
        case Collection(items=items):
            return [resolve(b, inputs, outputs) for b in items]
        case Mapping(items=items):
            return {key: resolve(b, inputs, outputs) for key, b in items.items()}


def mapped_type(item_type: TypeSpec, options: MapOptions) -> TypeSpec:
    """The type of a map node's output: a list of its task's, of optional values when items may fail."""
    if options.min_success_ratio < 1.0 and not isinstance(item_type, OptionalOf):
        return ListOf(OptionalOf(item_type))
    return ListOf(item_type)


def node_interface(task: TaskSpec, node: Node) -> Interface:
    """The interface a node presents: its task's, or, for a map node, lists of the mapped inputs and outputs."""
    if node.map is None:
        return task.interface
    options = node.map
    inputs = tuple(
        msgspec.structs.replace(p, type=ListOf(p.type)) if p.name in options.over else p for p in task.interface.inputs
    )
    outputs = tuple(msgspec.structs.replace(p, type=mapped_type(p.type, options)) for p in task.interface.outputs)
    return Interface(inputs, outputs)
