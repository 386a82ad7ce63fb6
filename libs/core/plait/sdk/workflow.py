"""``@workflow``: a function of task calls, traced once when it is defined into a DAG of nodes."""

from __future__ import annotations

import functools
import typing
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Generic, ParamSpec, TypeVar, get_args, overload

import msgspec

from plait.core.clusters import placement_problem
from plait.core.ids import content_version
from plait.core.model import Binding, FailurePolicy, FromInput, WorkflowSpec
from plait.core.notifications import Notify
from plait.core.validate import validate_workflow
from plait.errors import DefinitionError
from plait.sdk.signatures import SINGLE_OUTPUT, interface_of, is_named_tuple
from plait.sdk.subworkflow import inline
from plait.sdk.task import Task, source_of, timeout_in_seconds
from plait.sdk.tracing import Promise, WorkflowBuilder, checked_binding, current_builder

P = ParamSpec("P")
R = TypeVar("R")


class Workflow(Generic[P, R]):
    """A traced workflow: its spec (nodes, bindings, tasks) is fixed when the decorator runs."""

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        timeout: float | timedelta | None = None,
        failure_policy: FailurePolicy = "fail_fast",
        notify: Notify | None = None,
        cluster: str | None = None,
        cluster_selector: dict[str, str] | None = None,
    ) -> None:
        self.fn = fn
        self.notify = notify
        self.name = f"{fn.__module__}.{fn.__qualname__}"
        self.short_name = fn.__name__
        owner = f"workflow '{self.name}'"
        self.timeout_seconds = timeout_in_seconds(timeout, owner)
        self.failure_policy = _failure_policy(failure_policy, owner)
        self.cluster: str | msgspec.UnsetType = msgspec.UNSET if cluster is None else cluster
        self.cluster_selector: dict[str, str] | msgspec.UnsetType = (
            msgspec.UNSET if cluster_selector is None else dict(cluster_selector)
        )
        if (problem := placement_problem(self.cluster, self.cluster_selector, owner)) is not None:
            raise DefinitionError(problem)
        self.interface, self.input_hints = interface_of(fn, owner)
        self.return_hint = typing.get_type_hints(fn).get("return")
        self.tasks: dict[str, Task[Any, Any]] = {}
        self.spec = self._trace(owner)
        functools.update_wrapper(self, fn)

    def _trace(self, owner: str) -> WorkflowSpec:
        promises = {
            p.name: Promise(FromInput(p.name), p.type, f"workflow input '{p.name}'") for p in self.interface.inputs
        }
        with WorkflowBuilder[Task[Any, Any]](self.name) as builder:
            returned = typing.cast(Any, self.fn)(**promises)
        self.tasks = builder.tasks
        if builder.unfinished_branches:
            raise DefinitionError(
                f"{owner}: conditional '{builder.unfinished_branches[0]}' is not ended: end it with "
                ".else_().then(...) or .else_().fail(...)"
            )
        outputs = self._output_bindings(returned, owner)
        for name, binding in outputs.items():
            builder.check_visible(binding, f"{owner}: output '{name}'")
        unversioned = WorkflowSpec(
            name=self.name,
            version="",
            interface=self.interface,
            nodes=tuple(builder.nodes),
            outputs=outputs,
            tasks={name: t.spec for name, t in builder.tasks.items()},
            timeout_seconds=self.timeout_seconds,
            failure_policy=self.failure_policy,
        )
        validate_workflow(unversioned)
        task_versions = {name: task.version for name, task in unversioned.tasks.items()}
        version = content_version(
            unversioned.name,
            unversioned.interface,
            unversioned.nodes,
            unversioned.outputs,
            task_versions,
            source_of(self.fn),
            *([] if self.timeout_seconds is None else [self.timeout_seconds]),
            *([] if self.failure_policy is msgspec.UNSET else [self.failure_policy]),
            *([] if self.notify is None else [self.notify]),
            *([] if isinstance(self.cluster, msgspec.UnsetType) else [("cluster", self.cluster)]),
            *([] if isinstance(self.cluster_selector, msgspec.UnsetType) else [("selector", self.cluster_selector)]),
        )
        return WorkflowSpec(
            name=unversioned.name,
            version=version,
            interface=unversioned.interface,
            nodes=unversioned.nodes,
            outputs=unversioned.outputs,
            tasks=unversioned.tasks,
            timeout_seconds=unversioned.timeout_seconds,
            failure_policy=unversioned.failure_policy,
            notify=msgspec.UNSET if self.notify is None else self.notify,
            cluster=self.cluster,
            cluster_selector=self.cluster_selector,
        )

    def _output_bindings(self, returned: Any, owner: str) -> dict[str, Binding]:
        params = self.interface.outputs
        if not params:
            if returned is not None:
                raise DefinitionError(f"{owner}: returns a value but its return hint is None")
            return {}
        if is_named_tuple(self.return_hint):
            if not isinstance(returned, tuple) or len(returned) != len(params):
                raise DefinitionError(
                    f"{owner}: must return {len(params)} values ({', '.join(p.name for p in params)})"
                )
            values = dict(zip((p.name for p in params), returned, strict=True))
        else:
            values = {SINGLE_OUTPUT: returned}
        return {p.name: checked_binding(values[p.name], p.type, f"{owner}: output '{p.name}'") for p in params}

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        builder = current_builder()
        if builder is not None:  # called inside another workflow: its nodes are inlined there
            returned: R = inline(
                builder, self.short_name, self.spec, self.tasks, is_named_tuple(self.return_hint), args, kwargs
            )
            return returned
        raise DefinitionError(
            f"workflow '{self.name}' runs on plait: use `plait run FILE:{self.short_name}` or Client.launch()"
        )

    def __repr__(self) -> str:
        return f"<workflow {self.name}@{self.spec.version[:12]}>"


def _failure_policy(policy: str, owner: str) -> FailurePolicy | msgspec.UnsetType:
    """The spec's policy: UNSET for the default, so a workflow that names it has the version it had before."""
    if policy not in get_args(FailurePolicy):
        choices = " or ".join(repr(choice) for choice in get_args(FailurePolicy))
        raise DefinitionError(f"{owner}: failure_policy must be {choices}, not {policy!r}")
    return msgspec.UNSET if policy == "fail_fast" else "finish"


@overload
def workflow(fn: Callable[P, R], /) -> Workflow[P, R]: ...
@overload
def workflow(
    *,
    timeout: float | timedelta | None = None,
    failure_policy: FailurePolicy = "fail_fast",
    notify: Notify | None = None,
    cluster: str | None = None,
    cluster_selector: dict[str, str] | None = None,
) -> Callable[[Callable[P, R]], Workflow[P, R]]: ...
def workflow(
    fn: Callable[P, R] | None = None,
    /,
    *,
    timeout: float | timedelta | None = None,
    failure_policy: FailurePolicy = "fail_fast",
    notify: Notify | None = None,
    cluster: str | None = None,
    cluster_selector: dict[str, str] | None = None,
) -> Workflow[P, R] | Callable[[Callable[P, R]], Workflow[P, R]]:
    """Declare a workflow. Its body runs once, now, with promises for inputs: call tasks, wire their outputs.
    ``timeout`` (seconds, or a ``timedelta``): an execution running longer fails, and its running attempts stop.
    ``failure_policy``: ``"fail_fast"`` (the default) fails the execution as soon as a node fails, stopping its
    running attempts; ``"finish"`` runs on every node that does not depend on a failed one, skips those that do,
    and fails the execution once nothing more can run.
    ``notify`` (a ``Notify``): the ended phases to publish a notification of, and a webhook to post it to.
    ``cluster``: where its tasks that name no cluster run, unless the launch chooses one (``plait.core.clusters``);
    ``cluster_selector`` in its place: on a cluster whose live executors have those labels, chosen at launch."""
    options: dict[str, Any] = {
        "timeout": timeout,
        "failure_policy": failure_policy,
        "notify": notify,
        "cluster": cluster,
        "cluster_selector": cluster_selector,
    }
    if fn is not None:
        return Workflow(fn, **options)
    return lambda f: Workflow(f, **options)
