"""``map_task``: run a task once per item of a list, as one node, with a limit on how many items run at once."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from plait.core.model import MapOptions
from plait.errors import DefinitionError
from plait.sdk import tracing
from plait.sdk.task import Task


class MappedTask:
    """A task to call inside a ``@workflow`` with lists: one map node runs it for every item."""

    def __init__(self, task: Task[Any, Any], options: MapOptions) -> None:
        self.task, self.options = task, options

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        builder = tracing.current_builder()
        if builder is None:
            raise DefinitionError(f"map_task({self.task.short_name}) can only be called inside a @workflow")
        return builder.add_node(self.task, args, kwargs, self.options)

    def __repr__(self) -> str:
        return f"<map_task {self.task.name}>"


def map_task(
    task: Task[Any, Any], *, over: Iterable[str] = (), concurrency: int = 0, min_success_ratio: float = 1.0
) -> MappedTask:
    """Map ``task`` over lists. Inputs given a list of the task's input type are mapped (or exactly those named in
    ``over``); the others are passed unchanged to every item. The node's outputs are lists in item order.

    ``concurrency`` bounds the items queued or running at once (0: no bound of the user's). The node fails when
    fewer than ``min_success_ratio`` of its items succeed; failed items' outputs are None.
    """
    if not isinstance(task, Task):
        raise DefinitionError(f"map_task expects a @task, got {task!r}")
    return MappedTask(task, MapOptions(over=tuple(over), concurrency=concurrency, min_success_ratio=min_success_ratio))
