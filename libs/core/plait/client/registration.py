"""Registering workflows, their tasks and launch plans as immutable versions, and finding the latest one."""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from nats.aio.client import Client as NATS

from plait.adapters.code_store import upload_bundle
from plait.adapters.direct_reads import last_message
from plait.adapters.nats_errors import as_plait_errors
from plait.adapters.registry import kind_of, registration_decoder
from plait.client.connection import ClientBase, any_last_token, readable
from plait.core.bundles import bundled_spec
from plait.core.events import LaunchPlanRegistered, TaskRegistered, WorkflowRegistered
from plait.core.model import WorkflowSpec
from plait.errors import InputError, NotFound
from plait.protocol import subjects
from plait.sdk.bundles import pack
from plait.sdk.launch_plan import LaunchPlan
from plait.sdk.workflow import Workflow

Registration = TaskRegistered | WorkflowRegistered | LaunchPlanRegistered


class Registering(ClientBase):
    def __init__(self, nc: NATS, project: str = "default", domain: str = "development") -> None:
        super().__init__(nc, project, domain)
        self._registered: set[tuple[str, ...]] = set()  # the registrations this client has stored
        self._uploaded: set[str] = set()  # the code bundles this client has stored

    async def register(self, entity: Workflow[Any, Any] | LaunchPlan, *, fast: bool = False) -> str:
        """Register a workflow and its tasks (and a launch plan's workflow, then the plan) as immutable
        versions; returns the version of what was given.

        ``fast`` (fast registration) also uploads the workflow's source as a code bundle to the code bucket and
        registers the workflow with it: executors import its tasks from that bundle, not from the files, so this
        version runs the same code whatever becomes of them. Its version then counts the bundle's hash. Launch
        plans are registered without a bundle."""
        workflow = entity.workflow if isinstance(entity, LaunchPlan) else entity
        with as_plait_errors(f"registering {entity.name}"):
            workflow_spec = workflow.spec
            if fast and not isinstance(entity, LaunchPlan):
                workflow_spec = await self._upload_source(workflow)
            for task_spec in workflow.spec.tasks.values():
                await self._register_once(TaskRegistered(self.project, self.domain, task_spec))
            await self._register_once(WorkflowRegistered(self.project, self.domain, workflow_spec))
            if not isinstance(entity, LaunchPlan):
                return workflow_spec.version
            await self._register_once(LaunchPlanRegistered(self.project, self.domain, entity.spec))
        return entity.spec.version

    async def _upload_source(self, workflow: Workflow[Any, Any]) -> WorkflowSpec:
        """Pack the workflow's source, upload it unless the code bucket has it, and return the bundled spec."""
        bundle = await anyio.to_thread.run_sync(pack, workflow)
        if bundle.hash not in self._uploaded:
            await upload_bundle(self.js, bundle.hash, bundle.data)
            self._uploaded.add(bundle.hash)
        return bundled_spec(workflow.spec, bundle.hash)

    async def _register_once(self, registration: Registration) -> None:
        """Store a registration unless this client did already: versions are immutable, so launching the same
        workflow again costs no round trip to the registry."""
        spec = registration.spec
        key = (registration.project, registration.domain, kind_of(registration), spec.name, spec.version)
        if key not in self._registered:
            await self._registry.register(registration)
            self._registered.add(key)

    async def latest_version(self, workflow: str, kind: str = "workflow") -> str:
        """The version of ``workflow`` (or of a launch plan, with ``kind="launch_plan"``) registered last here."""
        try:
            pattern = any_last_token(subjects.registration_subject(self.project, self.domain, kind, workflow, "_"))
        except ValueError as exc:
            raise InputError(str(exc)) from None
        newest: tuple[int, str] | None = None
        what = f"looking up the latest version of {workflow}"
        with as_plait_errors(what), readable(what):
            for subject in await self._subjects(pattern):
                raw = await last_message(self.js, subject)
                if raw is None or raw.seq is None or raw.data is None:
                    continue
                if newest is None or raw.seq > newest[0]:
                    newest = (raw.seq, registration_decoder.decode(raw.data).spec.version)
        if newest is None:
            raise NotFound(f"{kind.replace('_', ' ')} '{workflow}' is not registered in {self.project}/{self.domain}")
        return newest[1]
