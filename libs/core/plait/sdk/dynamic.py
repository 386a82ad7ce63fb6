"""``@dynamic``: a task whose body is traced like a workflow's, when it runs, with its actual inputs.

``for item in items: square(x=item)`` in its body makes one node per item. The executor runs the body in the
attempt and returns the generated DAG (see ``plait.core.dynamic``); the execution records it and runs its nodes.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from datetime import timedelta
from typing import Any, ParamSpec, TypeVar, overload

import msgspec

from plait.core.dynamic import DYNAMIC_OUTPUT, DynamicWorkflow
from plait.core.model import DEFAULT_SYSTEM_RETRIES, Binding, Interface
from plait.errors import DefinitionError
from plait.sdk.signatures import SINGLE_OUTPUT, is_named_tuple
from plait.sdk.task import Task
from plait.sdk.tracing import WorkflowBuilder, checked_binding

P = ParamSpec("P")
R = TypeVar("R")


class Dynamic(Task[P, R]):
    """A task that builds a sub-DAG at run time: call it in a ``@workflow`` (or another ``@dynamic``) like a task."""

    def __init__(self, fn: Callable[P, R], **options: Any) -> None:
        if options.get("cache"):
            raise DefinitionError(f"dynamic task '{fn.__qualname__}': cannot be cached (its nodes can be)")
        super().__init__(fn, **options)
        self.options["dynamic"] = True

    def generate(self, arguments: dict[str, Any]) -> DynamicWorkflow:
        """Trace the body with the actual ``arguments``: the nodes its task calls make, and its outputs."""
        owner = f"dynamic task '{self.name}'"
        with WorkflowBuilder[Task[Any, Any]](self.name) as builder:
            returned = typing.cast(Any, self.fn)(**arguments)
        outputs = output_bindings(self.interface, self.return_hint, returned, owner)
        tasks = {name: task.spec for name, task in builder.tasks.items()}
        return DynamicWorkflow(nodes=tuple(builder.nodes), outputs=outputs, tasks=tasks)

    def generated_outputs(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """What an attempt of this task returns: the generated DAG, under ``DYNAMIC_OUTPUT``."""
        return {DYNAMIC_OUTPUT: msgspec.to_builtins(self.generate(arguments))}

    def __repr__(self) -> str:
        return f"<dynamic {self.name}>"


def output_bindings(interface: Interface, return_hint: Any, returned: Any, owner: str) -> dict[str, Binding]:
    """The bindings of a traced body's outputs (promises or values), checked against its interface."""
    params = interface.outputs
    if not params:
        if returned is not None:
            raise DefinitionError(f"{owner}: returns a value but its return hint is None")
        return {}
    if is_named_tuple(return_hint):
        if not isinstance(returned, tuple) or len(returned) != len(params):
            raise DefinitionError(f"{owner}: must return {len(params)} values ({', '.join(p.name for p in params)})")
        values = dict(zip((p.name for p in params), returned, strict=True))
    else:
        values = {SINGLE_OUTPUT: returned}
    return {p.name: checked_binding(values[p.name], p.type, f"{owner}: output '{p.name}'") for p in params}


@overload
def dynamic(fn: Callable[P, R], /) -> Dynamic[P, R]: ...
@overload
def dynamic(
    *,
    retries: int = 0,
    system_retries: int = DEFAULT_SYSTEM_RETRIES,
    retry_delay_seconds: float = 0.0,
    queue: str = "default",
    timeout: float | timedelta | None = None,
) -> Callable[[Callable[P, R]], Dynamic[P, R]]: ...
def dynamic(
    fn: Callable[P, R] | None = None, /, **options: Any
) -> Dynamic[P, R] | Callable[[Callable[P, R]], Dynamic[P, R]]:
    """Declare a dynamic task: inputs and outputs from its type hints, like ``@task``; its body calls tasks (with
    values, in loops and ifs) to build the nodes the execution runs next, and returns their outputs."""
    if fn is not None:
        return Dynamic(fn, **options)
    return lambda f: Dynamic(f, **options)
