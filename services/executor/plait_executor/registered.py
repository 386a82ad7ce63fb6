"""Only registered code runs: a dispatch's task must be registered under the dispatch's project, domain, name and
version, with the same target (module, qualified name, file), before any of its code is imported. Anyone who can
publish to the dispatch stream could otherwise name any module or file for the executor to import.

A registration is written once and never changes, so a task found registered is remembered (by its key and
target) and not looked up again.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import anyio
import msgspec
import nats.errors

from plait.adapters.registry import Registry
from plait.core.dispatch import Dispatch
from plait.core.dynamic import DYNAMIC_OUTPUT, generated_of, is_dynamic
from plait.core.events import TaskRegistered
from plait.core.model import TaskSpec
from plait.errors import NotFound, RegistrationConflict, TransportError
from plait_executor.attempt import AttemptOutcome, system_error
from plait_executor.backend import AttemptBackend

TASK_NOT_REGISTERED = "TaskNotRegistered"
"""``error_type`` of the system error of an attempt whose task is not registered as its dispatch names it."""
REGISTRY_UNREADABLE = "RegistryUnreadable"
"""``error_type`` of the system error of an attempt whose task's registration could not be read (NATS away)."""
REMEMBERED_TASKS = 10_000

_Found = TypeVar("_Found")
_Key = tuple[str, str, str, str]


class RegisteredTasks:
    """Which dispatched tasks are registered as dispatched: their registrations read once, then remembered."""

    def __init__(self, registry: Registry, remembered: int = REMEMBERED_TASKS) -> None:
        self.registry = registry
        self.remembered = remembered
        self._known: OrderedDict[_Key, TaskSpec] = OrderedDict()
        self._bundles: OrderedDict[_Key, str] = OrderedDict()  # each workflow's registered bundle ("": none)
        self.lookups = 0
        self._locks: dict[_Key, anyio.Lock] = {}  # registrations being read

    async def problem(self, dispatch: Dispatch) -> str | None:
        """Why ``dispatch``'s task may not run (None: it may). Raises ``TransportError`` when its registration
        cannot be read."""
        task = dispatch.task
        key = (dispatch.project, dispatch.domain, task.name, task.version)
        where = f"task '{task.name}' version {task.version} in {dispatch.project}/{dispatch.domain}"
        registered = await self._remembered(self._known, key, where, self.registry.task)
        if registered is None:
            return f"{where} is not registered: the executor runs only registered code"
        if registered.target != task.target:
            return (
                f"{where} is registered as {_named(registered)}, the dispatch names {_named(task)}: "
                "the executor runs only registered code"
            )
        if (registered.secrets or ()) != (task.secrets or ()):
            return f"{where} is registered with other secrets than the dispatch names: it may read only its own"
        return await self._bundle_problem(dispatch)

    async def _remembered(
        self, known: OrderedDict[_Key, _Found], key: _Key, where: str, read: Callable[..., Awaitable[_Found]]
    ) -> _Found | None:
        """What ``read(*key)`` gives (None: not registered), read once (the items of a map arrive together: one
        read for all of them) and remembered in ``known``, the most recently used ``remembered`` of them."""
        found = known.get(key)
        if found is not None:
            known.move_to_end(key)
            return found
        async with self._reading(key):
            found = known.get(key)
            if found is None:
                self.lookups += 1
                try:
                    found = await read(*key)
                except NotFound:
                    return None
                except nats.errors.Error as exc:
                    raise TransportError(f"the registration of {where} cannot be read: {exc!r}") from exc
                known[key] = found
                while len(known) > self.remembered:
                    known.popitem(last=False)
        return found

    async def _registered_bundle(self, project: str, domain: str, name: str, version: str) -> str:
        """The code bundle a workflow was registered with ("": none)."""
        spec = await self.registry.workflow(project, domain, name, version)
        return spec.code_bundle if isinstance(spec.code_bundle, str) else ""

    @contextlib.asynccontextmanager
    async def _reading(self, key: _Key) -> AsyncIterator[None]:
        lock = self._locks.setdefault(key, anyio.Lock())
        try:
            async with lock:
                yield
        finally:
            if not lock.locked() and lock.statistics().tasks_waiting == 0:
                self._locks.pop(key, None)

    async def _bundle_problem(self, dispatch: Dispatch) -> str | None:
        """Why the dispatch's code bundle may not be used (None: it has none, or its workflow is registered with
        it, in the dispatch's project and domain)."""
        if dispatch.code_bundle is msgspec.UNSET:
            return None
        if dispatch.workflow is msgspec.UNSET:
            return f"code bundle {dispatch.code_bundle}: the dispatch names no workflow registered with it"
        name, version = dispatch.workflow
        where = f"workflow '{name}' version {version} in {dispatch.project}/{dispatch.domain}"
        key = (dispatch.project, dispatch.domain, name, version)
        bundle = await self._remembered(self._bundles, key, where, self._registered_bundle)
        if bundle is None:
            return f"{where} is not registered: the executor runs only registered code"
        if bundle != dispatch.code_bundle:
            return f"{where} is not registered with code bundle {dispatch.code_bundle}"
        return None


def _named(task: TaskSpec) -> str:
    target = task.target
    return f"{target.module}:{target.qualname}" + (f" ({target.file})" if target.file else "")


def refusal(reason: str, error_type: str = TASK_NOT_REGISTERED) -> AttemptOutcome:
    return AttemptOutcome(error=system_error(f"the attempt was refused: {reason}", error_type))


class RegisteredOnlyBackend:
    """``inner``, running only the attempts whose task is registered as their dispatch names it; the others end
    as a system error on the attempt, none of their code imported."""

    def __init__(self, inner: AttemptBackend, tasks: RegisteredTasks) -> None:
        self.inner = inner
        self.tasks = tasks
        self.reports_itself = inner.reports_itself

    async def run(self, dispatch: Dispatch, *, on_start: Callable[[], None]) -> AttemptOutcome | None:
        try:
            problem = await self.tasks.problem(dispatch)
        except TransportError as exc:
            on_start()  # it ends here, without a worker, but it started
            return refusal(str(exc), REGISTRY_UNREADABLE)
        if problem is not None:
            on_start()
            return refusal(problem)
        return await self.inner.run(dispatch, on_start=on_start)

    async def stop(self, dispatch: Dispatch) -> str:
        return await self.inner.stop(dispatch)


def registered_only(backend: AttemptBackend, registry: Registry) -> AttemptBackend:
    """``backend``, refusing the dispatches of tasks not registered as the dispatch names them."""
    return RegisteredOnlyBackend(backend, RegisteredTasks(registry))


async def register_generated(registry: Registry, dispatch: Dispatch, outcome: AttemptOutcome) -> AttemptOutcome:
    """``outcome`` of a dynamic task's attempt, the tasks it generated registered first under the dispatch's project
    and domain (registered code generated them, so their attempts may run); a system error when one cannot be (its
    name and version registered with other content, or NATS away). Other outcomes are returned as they are."""
    if not is_dynamic(dispatch.task) or outcome.outputs is None or DYNAMIC_OUTPUT not in outcome.outputs:
        return outcome
    try:
        generated = generated_of(outcome.outputs)
    except ValueError:
        return outcome  # the scheduler records why it is malformed
    try:
        for spec in generated.tasks.values():
            await registry.register(TaskRegistered(dispatch.project, dispatch.domain, spec))
    except (RegistrationConflict, nats.errors.Error) as exc:
        message = f"a task the dynamic task generated cannot be registered: {exc}"
        return msgspec.structs.replace(outcome, outputs=None, error=system_error(message, "GeneratedTaskUnregistered"))
    return outcome


class GeneratedTasksBackend:
    """``inner``, registering the tasks its dynamic attempts generate (see ``register_generated``)."""

    def __init__(self, inner: AttemptBackend, registry: Registry) -> None:
        self.inner = inner
        self.registry = registry
        self.reports_itself = inner.reports_itself

    async def run(self, dispatch: Dispatch, *, on_start: Callable[[], None]) -> AttemptOutcome | None:
        outcome = await self.inner.run(dispatch, on_start=on_start)
        return outcome if outcome is None else await register_generated(self.registry, dispatch, outcome)

    async def stop(self, dispatch: Dispatch) -> str:
        return await self.inner.stop(dispatch)
