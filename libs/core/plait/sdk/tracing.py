"""Tracing a ``@workflow`` function into a DAG: task calls become nodes, their results promises."""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from typing import Any, Generic, Protocol, TypeVar

import msgspec

from plait.core.model import (
    Binding,
    Collection,
    ComparisonOperator,
    Constant,
    FromInput,
    FromNode,
    Guard,
    Interface,
    MapOptions,
    Mapping,
    Node,
    Param,
    mapped_type,
    upstream_nodes,
)
from plait.core.types import DictOf, ListOf, OptionalOf, Primitive, TypeSpec, assignable, check_value, describe
from plait.errors import DefinitionError
from plait.sdk.expressions import Expression, Operand, compare
from plait.sdk.hints import encode_value
from plait.sdk.signatures import SINGLE_OUTPUT, is_named_tuple


class TracedTask(Protocol):
    """What tracing reads of a task called inside a workflow (``plait.sdk.task.Task`` is one)."""

    @property
    def name(self) -> str: ...
    @property
    def short_name(self) -> str: ...
    @property
    def interface(self) -> Interface: ...
    @property
    def return_hint(self) -> Any: ...


T = TypeVar("T", bound=TracedTask)

_builder: contextvars.ContextVar[WorkflowBuilder[Any] | None] = contextvars.ContextVar("plait_builder", default=None)


def current_builder() -> WorkflowBuilder[Any] | None:
    return _builder.get()


class Promise:
    """A value that exists only when the workflow runs: a workflow input or a node's output."""

    def __init__(self, binding: FromInput | FromNode, type_: TypeSpec, label: str) -> None:
        self.binding, self.type, self.label = binding, type_, label

    def __repr__(self) -> str:
        return f"<promise {self.label}: {describe(self.type)}>"

    def __bool__(self) -> bool:
        raise DefinitionError(
            f"{self.label} is not known while the workflow is defined: it cannot be used in an if or a loop"
        )

    def __iter__(self) -> Iterator[Any]:
        raise DefinitionError(f"{self.label} is not known while the workflow is defined: it cannot be iterated")

    def __index__(self) -> int:
        raise DefinitionError(
            f"{self.label} is not known while the workflow is defined: it cannot size a range or index a list "
            "(the graph is fixed when the workflow is defined)"
        )

    def _no_arithmetic(self, *_: object) -> Any:
        raise DefinitionError(f"{self.label} is not known while the workflow is defined: compute with it inside a task")

    def _compare(self, op: ComparisonOperator, other: object) -> Any:
        right = Operand(other.binding, other.type, other.label) if isinstance(other, Promise) else other
        return compare(Operand(self.binding, self.type, self.label), op, right)

    def __eq__(self, other: object) -> Any:
        return self._compare("==", other)

    def __ne__(self, other: object) -> Any:
        return self._compare("!=", other)

    def __lt__(self, other: object) -> Any:
        return self._compare("<", other)

    def __le__(self, other: object) -> Any:
        return self._compare("<=", other)

    def __gt__(self, other: object) -> Any:
        return self._compare(">", other)

    def __ge__(self, other: object) -> Any:
        return self._compare(">=", other)

    __hash__ = object.__hash__
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = __rtruediv__ = _no_arithmetic
    __floordiv__ = __mod__ = __pow__ = __neg__ = __getitem__ = _no_arithmetic


class Outputs(tuple):  # type: ignore[type-arg]
    """The promises of a task with several named outputs; unpack it or read outputs by name."""

    _names: tuple[str, ...]

    def __new__(cls, promises: dict[str, Promise]) -> Outputs:
        instance = super().__new__(cls, promises.values())
        instance._names = tuple(promises)
        return instance

    def __getattr__(self, name: str) -> Promise:
        try:
            return self[self._names.index(name)]  # type: ignore[no-any-return]
        except ValueError:
            raise AttributeError(f"no output named '{name}' (outputs: {', '.join(self._names)})") from None


def bind(value: Any, where: str) -> Binding:
    """The binding of a value passed to a node: a promise, a collection holding promises, or a constant."""
    if isinstance(value, Promise):
        return value.binding
    if isinstance(value, Expression):
        raise DefinitionError(
            f"{where}: the condition {value.text} is not known while the workflow is defined: "
            "use it in conditional(...).if_(...), or compute with it inside a task"
        )
    if isinstance(value, (list, tuple)) and any(_holds_promise(v) for v in value):
        return Collection(tuple(bind(v, f"{where}[{i}]") for i, v in enumerate(value)))
    if isinstance(value, dict) and any(_holds_promise(v) for v in value.values()):
        return Mapping({str(k): bind(v, f"{where}[{k!r}]") for k, v in value.items()})
    try:
        return Constant(encode_value(value))
    except (TypeError, msgspec.EncodeError) as exc:
        raise DefinitionError(f"{where}: value {value!r} cannot be serialized: {exc}") from exc


def _holds_promise(value: Any) -> bool:
    if isinstance(value, Promise):
        return True
    if isinstance(value, (list, tuple)):
        return any(_holds_promise(v) for v in value)
    if isinstance(value, dict):
        return any(_holds_promise(v) for v in value.values())
    return False


class WorkflowBuilder(Generic[T]):
    """Collects nodes while a workflow function runs with promises for its inputs, and the tasks they run."""

    def __init__(self, workflow_name: str) -> None:
        self.workflow_name = workflow_name
        self.nodes: list[Node] = []
        self.tasks: dict[str, T] = {}
        self._names: dict[str, int] = {}
        self.guard: Guard | None = None  # the branch case being traced: nodes added now run only if it is taken
        self.guards: dict[str, Guard] = {}  # node -> the branch case it is in
        self.unfinished_branches: list[str] = []  # conditionals not yet ended with else_()

    def __enter__(self) -> WorkflowBuilder[T]:
        self._token = _builder.set(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        _builder.reset(self._token)

    def check_visible(self, binding: Binding, where: str) -> None:
        """A node inside a branch case can be read only inside that case (outside, read the branch's outputs)."""
        reachable = set(self.enclosing_cases())
        for node in upstream_nodes(binding):
            guard = self.guards.get(node)
            if guard is not None and guard not in reachable:
                raise DefinitionError(
                    f"{where}: reads node '{node}', which is inside case {guard.case} of branch '{guard.branch}' "
                    "(outside that case, use the branch's outputs)"
                )

    def enclosing_cases(self) -> list[Guard]:
        """The branch cases being traced, innermost first."""
        cases, guard = [], self.guard
        while guard is not None:
            cases.append(guard)
            guard = self.guards.get(guard.branch)
        return cases

    def _node_id(self, short_name: str) -> str:
        count = self._names.get(short_name, 0)
        self._names[short_name] = count + 1
        return short_name if count == 0 else f"{short_name}-{count}"

    def add_node(
        self, task: T, args: tuple[Any, ...], kwargs: dict[str, Any], mapping: MapOptions | None = None
    ) -> Any:
        """Add a node running ``task``; with ``mapping``, a map node (``mapping.over`` empty: the inputs given a
        list of the parameter's type are mapped over)."""
        known = self.tasks.setdefault(task.name, task)
        if known is not task:
            raise DefinitionError(f"workflow '{self.workflow_name}': two different tasks are named '{task.name}'")
        node_id = self._node_id(task.short_name)
        where = f"workflow '{self.workflow_name}', node '{node_id}' (task '{task.short_name}')"
        params = task.interface.inputs
        given = arguments_by_name(params, args, kwargs, where)
        bindings: dict[str, Binding] = {}
        mapped: list[str] = []
        for name, value in given.items():
            param = task.interface.input(name)
            if param is None:
                expected = ", ".join(p.name for p in params) or "none"
                raise DefinitionError(f"{where}: unknown input '{name}' (inputs: {expected})")
            if mapping is not None and _is_mapped(name, value, param.type, mapping):
                bindings[name] = checked_binding(value, ListOf(param.type), f"{where}: mapped input '{name}'")
                mapped.append(name)
            else:
                bindings[name] = checked_binding(value, param.type, f"{where}: input '{name}'")
        missing = [p.name for p in params if p.required and p.name not in bindings]
        if missing:
            raise DefinitionError(f"{where}: missing input {', '.join(repr(m) for m in missing)}")
        if mapping is not None:
            mapping = _checked_mapping(mapping, mapped, given, where)
        for name, binding in bindings.items():
            self.check_visible(binding, f"{where}: input '{name}'")
        self.add(Node(id=node_id, task=task.name, inputs=bindings, map=mapping))
        promises = {
            p.name: Promise(
                FromNode(node_id, p.name), _output_type(p.type, mapping), f"output '{p.name}' of node '{node_id}'"
            )
            for p in task.interface.outputs
        }
        if is_named_tuple(task.return_hint):
            return Outputs(promises)
        return promises.get(SINGLE_OUTPUT)

    def add(self, node: Node) -> None:
        """Add ``node``, inside the branch case being traced, if any."""
        if self.guard is not None and not isinstance(node.guard, Guard):
            node = msgspec.structs.replace(node, guard=self.guard)
        if isinstance(node.guard, Guard):
            self.guards[node.id] = node.guard
        self.nodes.append(node)


def arguments_by_name(
    params: tuple[Param, ...], args: tuple[Any, ...], kwargs: dict[str, Any], where: str
) -> dict[str, Any]:
    """The arguments of a call inside a workflow, positional ones named by ``params``."""
    if len(args) > len(params):
        raise DefinitionError(f"{where}: takes {len(params)} inputs, {len(args)} were given")
    given = {p.name: a for p, a in zip(params, args, strict=False)}
    for name, value in kwargs.items():
        if name in given:
            raise DefinitionError(f"{where}: input '{name}' is given twice")
        given[name] = value
    return given


def _is_mapped(name: str, value: Any, param_type: TypeSpec, mapping: MapOptions) -> bool:
    """Whether a map node's input gets one item per run: as asked, or else when given a list of the parameter's
    type (rather than a value of it)."""
    if mapping.over:
        return name in mapping.over
    if isinstance(value, Promise):
        return not assignable(value.type, param_type) and assignable(value.type, ListOf(param_type))
    try:
        checked_binding(value, param_type, "")
    except DefinitionError:
        return isinstance(value, (list, tuple))
    return False


def _checked_mapping(mapping: MapOptions, mapped: list[str], given: dict[str, Any], where: str) -> MapOptions:
    unknown = [name for name in mapping.over if name not in given]
    if unknown:
        raise DefinitionError(f"{where}: map over {', '.join(repr(n) for n in unknown)}, which is not given")
    if not mapped:
        raise DefinitionError(
            f"{where}: no input is a list of the task's input type, so there is nothing to map over "
            "(name the inputs with map_task(..., over=[...]))"
        )
    if mapping.concurrency < 0:
        raise DefinitionError(f"{where}: concurrency must be 0 (no limit) or more, got {mapping.concurrency}")
    if not 0.0 <= mapping.min_success_ratio <= 1.0:
        raise DefinitionError(f"{where}: min_success_ratio must be between 0 and 1, got {mapping.min_success_ratio}")
    return msgspec.structs.replace(mapping, over=tuple(mapped))


def _output_type(item_type: TypeSpec, mapping: MapOptions | None) -> TypeSpec:
    return item_type if mapping is None else mapped_type(item_type, mapping)


def checked_binding(value: Any, expected: TypeSpec, where: str) -> Binding:
    """The binding of ``value`` for a parameter of type ``expected``, checked item by item."""
    binding = bind(value, where)
    if isinstance(value, Promise):
        if not assignable(value.type, expected):
            raise DefinitionError(
                f"{where} expects {describe(expected)}, got {describe(value.type)} from {value.label}"
            )
    elif isinstance(binding, Constant):
        problem = check_value(expected, binding.value)
        if problem is not None:
            raise DefinitionError(f"{where} expects {describe(expected)}, got {value!r}: {problem}")
    elif expected == Primitive("any"):
        pass
    elif isinstance(expected, OptionalOf):
        return checked_binding(value, expected.inner, where)
    elif isinstance(binding, Collection):
        if not isinstance(expected, ListOf):
            raise DefinitionError(f"{where} expects {describe(expected)}, got a list")
        items = [checked_binding(v, expected.item, f"{where}[{i}]") for i, v in enumerate(value)]
        return Collection(tuple(items))
    elif isinstance(binding, Mapping):
        if not isinstance(expected, DictOf):
            raise DefinitionError(f"{where} expects {describe(expected)}, got a dict")
        return Mapping({str(k): checked_binding(v, expected.value, f"{where}[{k!r}]") for k, v in value.items()})
    return binding
