"""``Client``, the blocking twin of ``AsyncClient``: each method runs the async one through a portal to an event
loop in a background thread, so both have one implementation."""

from __future__ import annotations

import functools
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self, TypeVar, overload

from plait.adapters.event_log import StoredDecision
from plait.adapters.nats_auth import NatsAuth
from plait.client.async_client import AsyncClient
from plait.client.blocking_handle import ExecutionHandle, Portal
from plait.client.cache_admin import CacheClearing
from plait.client.catalog import QUERY_TIMEOUT_SECONDS
from plait.client.live_logs import OutputChunk
from plait.client.outcome import ExecutionOutcome
from plait.client.schedules import LaunchPlanSchedule
from plait.client.task_logs import AttemptOutput
from plait.core.model import EntityKind
from plait.core.state import ExecutionStatus
from plait.protocol.cache import CacheEntryDetail, CacheEntrySummary
from plait.protocol.executions import ExecutionDetail, ExecutionSummary
from plait.protocol.lineage import Direction, LineageGraph, SameValue
from plait.protocol.registry import LATEST, EntityDetail, EntitySummary
from plait.replay import Record
from plait.sdk.launch_plan import LaunchPlan
from plait.sdk.workflow import Workflow

R = TypeVar("R")


class Client:
    """The blocking twin of ``AsyncClient``: the same methods, arguments, results and errors (each documented
    there), for code that is not async; ``launch`` and ``handle`` give an ``ExecutionHandle``, ``events`` an
    iterator that yields each decision as it is appended. ``Client(url, project, domain)`` connects; use it as a
    context manager, or ``close()`` it."""

    def __init__(
        self, url: str, project: str = "default", domain: str = "development", *, auth: NatsAuth | None = None
    ) -> None:
        self._portal = Portal()
        try:
            self._async = self._portal.call(functools.partial(AsyncClient.connect, url, project, domain, auth=auth))
        except BaseException:
            self._portal.close()
            raise
        self.project, self.domain = self._async.project, self._async.domain
        # Closes a client left open when it is collected or the interpreter exits, while the loop thread still runs.
        self._closer = weakref.finalize(self, _close, self._portal, self._async)

    @classmethod
    def connect(
        cls, url: str, project: str = "default", domain: str = "development", *, auth: NatsAuth | None = None
    ) -> Self:
        """Connect to the NATS server(s) at ``url`` (comma-separated, credentials as ``nats://user:pass@host``) and
        talk about ``project``/``domain``; raises ``ConnectError`` when no server answers."""
        return cls(url, project, domain, auth=auth)

    def close(self) -> None:
        """Close the connection, then stop the background event loop."""
        self._closer()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def register(self, entity: Workflow[Any, Any] | LaunchPlan, *, fast: bool = False) -> str:
        return self._portal.call(self._async.register, entity, fast=fast)

    def latest_version(self, workflow: str, kind: str = "workflow") -> str:
        return self._portal.call(self._async.latest_version, workflow, kind)

    def handle(self, execution_id: str, workflow: Workflow[Any, R] | None = None) -> ExecutionHandle[R]:
        return ExecutionHandle(self._async.handle(execution_id, workflow), self._portal)

    @overload
    def launch(
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
    ) -> ExecutionHandle[R]: ...

    @overload
    def launch(
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
    ) -> ExecutionHandle[Any]: ...

    def launch(
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
    ) -> ExecutionHandle[Any]:
        launched = self._portal.call(
            self._async.launch,
            workflow,
            inputs,
            version=version,
            launch_plan=launch_plan,
            execution_id=execution_id,
            idempotency_key=idempotency_key,
            launched_by=launched_by,
            overwrite_cache=overwrite_cache,
            timeout=timeout,
            cluster=cluster,
            fast=fast,
            cluster_selector=cluster_selector,
        )
        return ExecutionHandle(launched, self._portal)

    def events(self, execution_id: str, *, until_terminal: bool = True) -> Iterator[StoredDecision]:
        return self._portal.iterate(self._async.events(execution_id, until_terminal=until_terminal))

    def wait(self, execution_id: str, timeout: float | None = None) -> ExecutionOutcome:
        return self._portal.call(self._async.wait, execution_id, timeout)

    def abort(self, execution_id: str, reason: str = "aborted by request", *, aborted_by: str = "") -> None:
        self._portal.call(self._async.abort, execution_id, reason, aborted_by=aborted_by)

    def relaunch(
        self, execution_id: str, *, new_execution_id: str | None = None, launched_by: str = "", timeout: float = 30.0
    ) -> ExecutionHandle[Any]:
        launched = self._portal.call(
            self._async.relaunch,
            execution_id,
            new_execution_id=new_execution_id,
            launched_by=launched_by,
            timeout=timeout,
        )
        return ExecutionHandle(launched, self._portal)

    def recover(
        self, execution_id: str, *, new_execution_id: str | None = None, launched_by: str = "", timeout: float = 30.0
    ) -> ExecutionHandle[Any]:
        launched = self._portal.call(
            self._async.recover,
            execution_id,
            new_execution_id=new_execution_id,
            launched_by=launched_by,
            timeout=timeout,
        )
        return ExecutionHandle(launched, self._portal)

    def signal(
        self, execution_id: str, name: str, value: Any = None, *, reject: bool = False, timeout: float = 30.0
    ) -> None:
        self._portal.call(self._async.signal, execution_id, name, value, reject=reject, timeout=timeout)

    def records(self, execution_id: str) -> list[Record]:
        return self._portal.call(self._async.records, execution_id)

    def logs(self, execution_id: str, node: str | None = None, attempt: int | None = None) -> str:
        return self._portal.call(self._async.logs, execution_id, node, attempt)

    def attempt_outputs(self, execution_id: str) -> list[AttemptOutput]:
        return self._portal.call(self._async.attempt_outputs, execution_id)

    def stored_outputs(self, execution_id: str) -> dict[str, Any]:
        return self._portal.call(self._async.stored_outputs, execution_id)

    def outputs(self, execution_id: str, directory: str | Path | None = None) -> dict[str, Any]:
        return self._portal.call(self._async.outputs, execution_id, directory)

    def live_output(self, execution_id: str, attempt_id: str) -> str:
        return self._portal.call(self._async.live_output, execution_id, attempt_id)

    def follow_logs(self, execution_id: str, node: str | None = None) -> Iterator[OutputChunk]:
        return self._portal.iterate(self._async.follow_logs(execution_id, node))

    def execution_ids(self) -> list[str]:
        return self._portal.call(self._async.execution_ids)

    def log_position(self) -> int:
        return self._portal.call(self._async.log_position)

    def list_executions(
        self,
        *,
        status: ExecutionStatus | None = None,
        limit: int = 20,
        min_sequence: int | None = None,
        timeout: float = QUERY_TIMEOUT_SECONDS,
    ) -> list[ExecutionSummary]:
        return self._portal.call(
            self._async.list_executions, status=status, limit=limit, min_sequence=min_sequence, timeout=timeout
        )

    def show_execution(
        self,
        execution_id: str,
        *,
        attempts_limit: int = 100,
        min_sequence: int | None = None,
        timeout: float = QUERY_TIMEOUT_SECONDS,
    ) -> ExecutionDetail:
        return self._portal.call(
            self._async.show_execution,
            execution_id,
            attempts_limit=attempts_limit,
            min_sequence=min_sequence,
            timeout=timeout,
        )

    def lineage(
        self,
        target: str,
        direction: Direction = "both",
        depth: int = 3,
        *,
        max_edges: int = 5000,
        min_sequence: int = 0,
        timeout: float = QUERY_TIMEOUT_SECONDS,
    ) -> LineageGraph:
        return self._portal.call(
            self._async.lineage,
            target,
            direction,
            depth,
            max_edges=max_edges,
            min_sequence=min_sequence,
            timeout=timeout,
        )

    def same_value(
        self, target: str, *, limit: int = 100, min_sequence: int = 0, timeout: float = QUERY_TIMEOUT_SECONDS
    ) -> SameValue:
        return self._portal.call(
            self._async.same_value, target, limit=limit, min_sequence=min_sequence, timeout=timeout
        )

    def tasks(
        self, name: str | None = None, *, min_sequence: int = 0, timeout: float = QUERY_TIMEOUT_SECONDS
    ) -> list[EntitySummary]:
        return self._portal.call(self._async.tasks, name, min_sequence=min_sequence, timeout=timeout)

    def workflows(
        self, name: str | None = None, *, min_sequence: int = 0, timeout: float = QUERY_TIMEOUT_SECONDS
    ) -> list[EntitySummary]:
        return self._portal.call(self._async.workflows, name, min_sequence=min_sequence, timeout=timeout)

    def launch_plans(
        self, name: str | None = None, *, min_sequence: int = 0, timeout: float = QUERY_TIMEOUT_SECONDS
    ) -> list[EntitySummary]:
        return self._portal.call(self._async.launch_plans, name, min_sequence=min_sequence, timeout=timeout)

    def entities(
        self,
        kind: EntityKind,
        name: str | None = None,
        *,
        min_sequence: int = 0,
        timeout: float = QUERY_TIMEOUT_SECONDS,
    ) -> list[EntitySummary]:
        return self._portal.call(self._async.entities, kind, name, min_sequence=min_sequence, timeout=timeout)

    def show_entity(
        self,
        kind: EntityKind,
        name: str,
        version: str = LATEST,
        *,
        min_sequence: int = 0,
        timeout: float = QUERY_TIMEOUT_SECONDS,
    ) -> EntityDetail:
        return self._portal.call(
            self._async.show_entity, kind, name, version, min_sequence=min_sequence, timeout=timeout
        )

    def cache_entries(
        self, task: str | None = None, limit: int = 50, *, min_sequence: int = 0, timeout: float = QUERY_TIMEOUT_SECONDS
    ) -> list[CacheEntrySummary]:
        return self._portal.call(self._async.cache_entries, task, limit, min_sequence=min_sequence, timeout=timeout)

    def cache_entry(
        self, key: str, *, min_sequence: int = 0, timeout: float = QUERY_TIMEOUT_SECONDS
    ) -> CacheEntryDetail:
        return self._portal.call(self._async.cache_entry, key, min_sequence=min_sequence, timeout=timeout)

    def clear_cache(self, keys: list[str], cleared_by: str = "") -> CacheClearing:
        return self._portal.call(self._async.clear_cache, keys, cleared_by)

    def activate_launch_plan(self, name: str, version: str = LATEST, *, by: str = "") -> LaunchPlanSchedule:
        return self._portal.call(self._async.activate_launch_plan, name, version, by=by)

    def deactivate_launch_plan(self, name: str, *, by: str = "") -> LaunchPlanSchedule:
        return self._portal.call(self._async.deactivate_launch_plan, name, by=by)

    def launch_plan_schedule(self, name: str, fires: int = 5) -> LaunchPlanSchedule:
        return self._portal.call(self._async.launch_plan_schedule, name, fires)


def _close(portal: Portal, client: AsyncClient) -> None:
    try:
        portal.call(client.close)
    finally:
        portal.close()
