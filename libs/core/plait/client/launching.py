"""Launching executions: at most once per call (or per idempotency key), decided before ``launch`` returns."""

from __future__ import annotations

from typing import Any, TypeVar, overload

import msgspec

from plait.adapters.nats_errors import as_plait_errors
from plait.adapters.object_store import ValueUnstorable
from plait.client.following import Following
from plait.client.handle import AsyncExecutionHandle
from plait.client.identity import default_principal
from plait.client.launch_decision import LaunchDecision
from plait.client.registration import Registering
from plait.core.clusters import placement_problem
from plait.core.commands import LaunchExecution
from plait.core.ids import content_version, new_execution_id
from plait.errors import InputError
from plait.protocol.registry import LATEST
from plait.sdk.hints import encode_value
from plait.sdk.launch_plan import LaunchPlan
from plait.sdk.workflow import Workflow
from plait.telemetry import span

R = TypeVar("R")


def idempotent_execution_id(project: str, domain: str, key: str) -> str:
    """The execution id that launches with idempotency ``key`` in ``project``/``domain`` all share."""
    return "k" + content_version("launch", project, domain, key)[:25]


class Launching(Registering, Following, LaunchDecision):
    def handle(self, execution_id: str, workflow: Workflow[Any, R] | None = None) -> AsyncExecutionHandle[R]:
        """A handle on an execution launched before; with its ``workflow``, ``result()`` decodes to its return
        type."""
        self._subject(execution_id)
        return AsyncExecutionHandle(self, execution_id, workflow)

    @overload
    async def launch(
        self,
        workflow: Workflow[Any, R],
        inputs: dict[str, Any] | None = None,
        *,
        version: str | None = None,
        launch_plan: bool = False,
        execution_id: str | None = None,
        idempotency_key: str | None = None,
        launched_by: str = "",
        overwrite_cache: bool = False,
        timeout: float = 30.0,
        cluster: str | None = None,
        fast: bool = False,
        cluster_selector: dict[str, str] | None = None,
    ) -> AsyncExecutionHandle[R]: ...

    @overload
    async def launch(
        self,
        workflow: LaunchPlan | str,
        inputs: dict[str, Any] | None = None,
        *,
        version: str | None = None,
        launch_plan: bool = False,
        execution_id: str | None = None,
        idempotency_key: str | None = None,
        launched_by: str = "",
        overwrite_cache: bool = False,
        timeout: float = 30.0,
        cluster: str | None = None,
        fast: bool = False,
        cluster_selector: dict[str, str] | None = None,
    ) -> AsyncExecutionHandle[Any]: ...

    async def launch(
        self,
        workflow: Workflow[Any, Any] | LaunchPlan | str,
        inputs: dict[str, Any] | None = None,
        *,
        version: str | None = None,
        launch_plan: bool = False,
        execution_id: str | None = None,
        idempotency_key: str | None = None,
        launched_by: str = "",
        overwrite_cache: bool = False,
        timeout: float = 30.0,
        cluster: str | None = None,
        fast: bool = False,
        cluster_selector: dict[str, str] | None = None,
    ) -> AsyncExecutionHandle[Any]:
        """Launch an execution and return its handle once the scheduler accepted it.

        ``workflow`` is a ``Workflow`` or a ``LaunchPlan`` (registered first), or a registered name with
        ``version`` (``"latest"``: the version registered last); a launch plan's name when ``launch_plan``.
        ``execution_id`` doubles as an idempotency key: launching it again starts nothing new.
        ``idempotency_key`` derives that id from the key, the project and the domain, so every launch
        with the same key, however often delivered, starts one execution. ``overwrite_cache`` runs cached
        tasks without looking them up, and stores their results in place of the cached ones. ``cluster`` runs its
        tasks there, except those that name their own (above a launch plan's and the workflow's choice);
        ``cluster_selector`` (``{"gpu": "a100"}``) in its place runs them on a cluster whose live executors have those
        labels, which the scheduler chooses and records (no live executor matches: ``InputError`` naming what is
        live). ``fast`` registers a ``Workflow`` with its source bundle (see ``register``).

        Without either, the id is made once per call, and every retry of the call's own (a publish whose
        acknowledgement was lost, say) reuses it: one call starts at most one execution. Raises ``InputError``
        when the scheduler rejects the launch (for instance, bad inputs); ``Unavailable`` or ``Timeout`` when
        it is not known whether the launch was stored: their ``execution_id`` launches it again, at most once.
        """
        if execution_id is not None and idempotency_key is not None:
            raise InputError("give an execution id or an idempotency key, not both")
        if idempotency_key is not None:
            execution_id = idempotent_execution_id(self.project, self.domain, idempotency_key)
        fresh_id = execution_id is None
        execution_id = execution_id or new_execution_id()
        self._subject(execution_id)  # a valid id, before anything is stored
        on = msgspec.UNSET if cluster is None else cluster
        by_labels = msgspec.UNSET if cluster_selector is None else dict(cluster_selector)
        if (problem := placement_problem(on, by_labels, f"launching {execution_id}")) is not None:
            raise InputError(problem)
        try:
            encoded = {name: encode_value(value) for name, value in (inputs or {}).items()}
        except (TypeError, msgspec.EncodeError) as exc:
            raise InputError(f"the inputs of execution {execution_id} cannot be encoded: {exc}") from None
        kind = "launch_plan" if launch_plan or isinstance(workflow, LaunchPlan) else "workflow"
        with as_plait_errors(f"launching execution {execution_id}", execution_id=execution_id):
            try:
                encoded = await self._values.store_all(encoded)
            except ValueUnstorable as exc:
                raise InputError(f"the inputs of execution {execution_id} cannot be stored: {exc}") from None
            if isinstance(workflow, (Workflow, LaunchPlan)):
                version = await self.register(workflow, fast=fast)
                name = workflow.name
            elif version is None:
                raise InputError("launching by name needs a version (or 'latest')")
            else:
                name = workflow
                if version == LATEST:
                    version = await self.latest_version(name, kind=kind)
            command = LaunchExecution(
                command_id=f"launch:{execution_id}",
                execution_id=execution_id,
                project=self.project,
                domain=self.domain,
                workflow="" if kind == "launch_plan" else name,
                version="" if kind == "launch_plan" else version,
                launch_plan=name if kind == "launch_plan" else "",
                launch_plan_version=version if kind == "launch_plan" else "",
                inputs=encoded,
                launched_by=launched_by,
                overwrite_cache=overwrite_cache,
                cluster=cluster or "",
                cluster_selector=dict(cluster_selector or {}),
            )
            with span("plait.launch", attributes={"plait.execution_id": execution_id, "plait.workflow": name}):
                rejection = await self._launch_decided(command, timeout, fresh_id=fresh_id)
        if rejection is not None:
            raise InputError(rejection)
        typed = workflow.workflow if isinstance(workflow, LaunchPlan) else workflow
        return AsyncExecutionHandle(self, execution_id, typed if isinstance(typed, Workflow) else None)

    async def relaunch(
        self, execution_id: str, *, new_execution_id: str | None = None, launched_by: str = "", timeout: float = 30.0
    ) -> AsyncExecutionHandle[Any]:
        """Launch a new execution of ``execution_id``'s workflow version, with its inputs (and launch plan), linked
        to it (``relaunch_of``). The scheduler reads them from the log. ``new_execution_id`` doubles as an
        idempotency key. Raises ``InputError`` when the scheduler refuses it (no such execution, say)."""
        return await self._launch_again(execution_id, new_execution_id, launched_by, timeout, recover=False)

    async def recover(
        self, execution_id: str, *, new_execution_id: str | None = None, launched_by: str = "", timeout: float = 30.0
    ) -> AsyncExecutionHandle[Any]:
        """Launch a new execution of a failed or aborted ``execution_id`` that reuses the outputs of its succeeded
        nodes, read from its log and recorded in the new one (``NodeRecovered``), and runs only the rest. Raises
        ``InputError`` when the scheduler refuses it (still running, succeeded, or no such execution)."""
        return await self._launch_again(execution_id, new_execution_id, launched_by, timeout, recover=True)

    async def _launch_again(
        self, original: str, execution_id: str | None, launched_by: str, timeout: float, *, recover: bool
    ) -> AsyncExecutionHandle[Any]:
        self._subject(original)
        fresh_id = execution_id is None
        execution_id = execution_id or new_execution_id()
        self._subject(execution_id)
        command = LaunchExecution(
            command_id=f"launch:{execution_id}",
            execution_id=execution_id,
            project=self.project,
            domain=self.domain,
            launched_by=launched_by or default_principal(),
            relaunch_of=original,
            recover=recover,
        )
        verb = "recovering" if recover else "relaunching"
        with (
            as_plait_errors(f"{verb} execution {original} as {execution_id}", execution_id=execution_id),
            span(f"plait.{'recover' if recover else 'relaunch'}", attributes={"plait.execution_id": execution_id}),
        ):
            rejection = await self._launch_decided(command, timeout, fresh_id=fresh_id)
        if rejection is not None:
            raise InputError(rejection)
        return AsyncExecutionHandle(self, execution_id)
