"""``@task``: a typed Python function that runs as one node of a workflow."""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any, Generic, ParamSpec, TypeVar, overload

import msgspec

from plait.core.clusters import placement_problem
from plait.core.ids import content_version
from plait.core.kubernetes_options import KUBERNETES_TASK_OPTIONS, KubernetesOptions
from plait.core.model import DEFAULT_SYSTEM_RETRIES, TaskSpec, TaskTarget
from plait.errors import DefinitionError
from plait.sdk import tracing
from plait.sdk.secrets import name_problem
from plait.sdk.signatures import interface_of

P = ParamSpec("P")
R = TypeVar("R")


def source_of(fn: Callable[..., Any]) -> str:
    try:
        return inspect.getsource(fn)
    except (OSError, TypeError):
        return fn.__qualname__


def timeout_in_seconds(timeout: float | timedelta | None, owner: str) -> float | None:
    """A ``timeout=`` option (seconds, or a ``timedelta``) in seconds; it must be positive."""
    if timeout is None:
        return None
    seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else float(timeout)
    if not seconds > 0:
        raise DefinitionError(f"{owner}: timeout must be positive, not {timeout!r}")
    return seconds


class Task(Generic[P, R]):
    """A task: call it inside a ``@workflow`` to add a node, or outside one to run the function."""

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        retries: int = 0,
        system_retries: int = DEFAULT_SYSTEM_RETRIES,
        retry_delay_seconds: float = 0.0,
        queue: str = "default",
        timeout: float | timedelta | None = None,
        cache: bool = False,
        cache_version: str = "",
        cluster: str | None = None,
        cluster_selector: dict[str, str] | None = None,
        secrets: Iterable[str] = (),
        **kubernetes: Any,
    ) -> None:
        if "<locals>" in fn.__qualname__:
            raise DefinitionError(
                f"task '{fn.__qualname__}': tasks must be defined at module level so workers can import them"
            )
        self.fn = fn
        self.name = f"{fn.__module__}.{fn.__qualname__}"
        self.short_name = fn.__name__
        self.interface, self.input_hints = interface_of(fn, f"task '{self.name}'")
        self.return_hint = typing.get_type_hints(fn).get("return")
        if retries < 0 or system_retries < 0 or retry_delay_seconds < 0:
            raise DefinitionError(
                f"task '{fn.__qualname__}': retries, system_retries and retry_delay_seconds cannot be negative"
            )
        self.options = {
            "retries": retries,
            "retry_delay_seconds": float(retry_delay_seconds),
            "queue": queue,
            "timeout_seconds": timeout_in_seconds(timeout, f"task '{fn.__qualname__}'"),
            "cache": cache,
            "cache_version": cache_version,
        }
        if system_retries != DEFAULT_SYSTEM_RETRIES:  # left out at its default, so older tasks keep their versions
            self.options["system_retries"] = system_retries
        if (on_kubernetes := _kubernetes_options(fn.__qualname__, kubernetes)) is not msgspec.UNSET:
            self.options["kubernetes"] = on_kubernetes
        on = msgspec.UNSET if cluster is None else cluster
        by_labels = msgspec.UNSET if cluster_selector is None else dict(cluster_selector)
        if (problem := placement_problem(on, by_labels, f"task '{fn.__qualname__}'")) is not None:
            raise DefinitionError(problem)
        if cluster is not None:  # left out when not chosen, so older tasks keep their versions
            self.options["cluster"] = cluster
        if cluster_selector is not None:
            self.options["cluster_selector"] = by_labels
        if names := _secret_names(fn.__qualname__, secrets):  # left out when none, so older tasks keep their versions
            self.options["secrets"] = names
        functools.update_wrapper(self, fn)

    @functools.cached_property
    def spec(self) -> TaskSpec:
        module = inspect.getmodule(self.fn)
        unversioned = TaskSpec(
            name=self.name,
            version="",
            interface=self.interface,
            target=TaskTarget(
                module=self.fn.__module__,
                qualname=self.fn.__qualname__,
                file=getattr(module, "__file__", None),
            ),
            **self.options,  # type: ignore[arg-type]
        )
        version = content_version(self.name, self.interface, self.options, source_of(self.fn))
        return msgspec.structs.replace(unversioned, version=version)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        builder = tracing.current_builder()
        if builder is None:
            return self.fn(*args, **kwargs)
        return builder.add_node(self, args, kwargs)  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"<task {self.name}>"


@overload
def task(fn: Callable[P, R], /) -> Task[P, R]: ...
@overload
def task(
    *,
    retries: int = 0,
    system_retries: int = DEFAULT_SYSTEM_RETRIES,
    retry_delay_seconds: float = 0.0,
    queue: str = "default",
    timeout: float | timedelta | None = None,
    cache: bool = False,
    cache_version: str = "",
    cluster: str | None = None,
    cluster_selector: dict[str, str] | None = None,
    secrets: Iterable[str] = (),
    image: str | None = None,
    requests: dict[str, str | int] | None = None,
    limits: dict[str, str | int] | None = None,
    node_selector: dict[str, str] | None = None,
    tolerations: list[dict[str, Any]] | None = None,
    service_account: str | None = None,
    pod_template: dict[str, Any] | None = None,
) -> Callable[[Callable[P, R]], Task[P, R]]: ...
def task(fn: Callable[P, R] | None = None, /, **options: Any) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
    """Declare a task. Inputs and outputs come from the type hints; a NamedTuple return names several outputs.

    ``image``, ``requests``, ``limits``, ``node_selector``, ``tolerations``, ``service_account`` and
    ``pod_template`` say how its attempts run as Kubernetes Jobs (``plait executor --backend kubernetes``).
    ``cluster`` names the cluster whose executors run its attempts, whatever the launch or workflow choose
    (see ``plait.core.clusters``); ``cluster_selector`` (``{"gpu": "a100"}``) in its place runs them on a cluster
    whose live executors have those labels, chosen when the execution is launched (see ``plait.core.selectors``).
    ``secrets`` names the secrets its attempts read with ``plait.sdk.secrets.get`` (resolved where they run, see
    ``plait.sdk.secrets``).
    """
    if fn is not None:
        return Task(fn, **options)
    return lambda f: Task(f, **options)


def _kubernetes_options(qualname: str, given: dict[str, Any]) -> KubernetesOptions | msgspec.UnsetType:
    unknown = set(given) - set(KUBERNETES_TASK_OPTIONS)
    if unknown:
        raise TypeError(f"task '{qualname}': unexpected options {', '.join(sorted(unknown))}")
    chosen = {name: value for name, value in given.items() if value is not None}
    if not chosen:
        return msgspec.UNSET
    try:
        return msgspec.convert(chosen, KubernetesOptions)
    except msgspec.ValidationError as exc:
        raise DefinitionError(f"task '{qualname}': invalid Kubernetes options: {exc}") from exc


def _secret_names(qualname: str, given: Iterable[str]) -> tuple[str, ...]:
    if isinstance(given, str):
        raise DefinitionError(f"task '{qualname}': secrets is a list of secret names, not the string {given!r}")
    names = tuple(dict.fromkeys(given))
    for name in names:
        if (problem := name_problem(name)) is not None:
            raise DefinitionError(f"task '{qualname}': {problem}")
    return names
