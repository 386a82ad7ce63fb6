"""Catalog queries of executions, lineage and the registry, answered with the protocol's Structs."""

from __future__ import annotations

from plait.client.catalog import QUERY_TIMEOUT_SECONDS, CatalogClient
from plait.core.model import EntityKind
from plait.core.state import ExecutionStatus
from plait.protocol import subjects
from plait.protocol.executions import (
    ExecutionDetail,
    ExecutionList,
    ExecutionShown,
    ExecutionSummary,
    ListExecutions,
    ShowExecution,
)
from plait.protocol.lineage import Direction, LineageGraph, LineageRequest, SameValue, SameValueRequest
from plait.protocol.registry import (
    LATEST,
    EntityDetail,
    EntityList,
    EntityShown,
    EntitySummary,
    ListEntities,
    ShowEntity,
)

ARTIFACT_PREFIX = "artifact:"  # of the artifact ids in a lineage graph; a target may be given with it or not


class Queries(CatalogClient):
    async def list_executions(
        self,
        *,
        status: ExecutionStatus | None = None,
        limit: int = 20,
        min_sequence: int | None = None,
        timeout: float = QUERY_TIMEOUT_SECONDS,
    ) -> list[ExecutionSummary]:
        """Recent executions of this project and domain, newest first, as the catalog has projected them: by
        default once it has projected everything logged so far (what this client saw end is listed); with
        ``min_sequence=0``, at once, as far as it got."""
        if min_sequence is None:
            min_sequence = await self.log_position()
        request = ListExecutions(
            project=self.project, domain=self.domain, status=status, limit=limit, min_sequence=min_sequence
        )
        return (await self._ask(subjects.CATALOG_LIST_EXECUTIONS, request, ExecutionList, timeout)).executions

    async def show_execution(
        self,
        execution_id: str,
        *,
        attempts_limit: int = 100,
        min_sequence: int | None = None,
        timeout: float = QUERY_TIMEOUT_SECONDS,
    ) -> ExecutionDetail:
        """One execution with its nodes and their first ``attempts_limit`` attempts each, as the catalog has
        projected it (by default, once it has projected everything logged so far)."""
        if min_sequence is None:
            min_sequence = await self.log_position()
        request = ShowExecution(
            project=self.project,
            domain=self.domain,
            execution_id=execution_id,
            attempts_limit=attempts_limit,
            min_sequence=min_sequence,
        )
        return (await self._ask(subjects.CATALOG_SHOW_EXECUTION, request, ExecutionShown, timeout)).execution

    async def lineage(
        self,
        target: str,
        direction: Direction = "both",
        depth: int = 3,
        *,
        max_edges: int = 5000,
        min_sequence: int = 0,
        timeout: float = QUERY_TIMEOUT_SECONDS,
    ) -> LineageGraph:
        """The lineage graph around an artifact id or an execution id: ``root``, ``nodes`` and ``edges``;
        ``truncated`` when it met more than ``max_edges`` edges within ``depth`` steps. It follows artifacts
        (one output of one attempt), not values: executions that met equal values are linked by ``same_value``
        only."""
        request = LineageRequest(
            project=self.project,
            domain=self.domain,
            target=target.removeprefix(ARTIFACT_PREFIX),
            direction=direction,
            depth=depth,
            max_edges=max_edges,
            min_sequence=min_sequence,
        )
        return await self._ask(subjects.CATALOG_LINEAGE, request, LineageGraph, timeout)

    async def same_value(
        self, target: str, *, limit: int = 100, min_sequence: int = 0, timeout: float = QUERY_TIMEOUT_SECONDS
    ) -> SameValue:
        """The artifacts that hold the same value as ``target``: an artifact id (those of other executions) or a
        value hash (all), newest execution first; ``truncated`` when more than ``limit`` do."""
        request = SameValueRequest(
            project=self.project,
            domain=self.domain,
            target=target.removeprefix(ARTIFACT_PREFIX),
            limit=limit,
            min_sequence=min_sequence,
        )
        return await self._ask(subjects.CATALOG_SAME_VALUE, request, SameValue, timeout)

    async def tasks(
        self, name: str | None = None, *, min_sequence: int = 0, timeout: float = QUERY_TIMEOUT_SECONDS
    ) -> list[EntitySummary]:
        """Registered tasks, by name, each with its versions newest first."""
        return await self.entities("task", name, min_sequence=min_sequence, timeout=timeout)

    async def workflows(
        self, name: str | None = None, *, min_sequence: int = 0, timeout: float = QUERY_TIMEOUT_SECONDS
    ) -> list[EntitySummary]:
        """Registered workflows, by name, each with its versions newest first."""
        return await self.entities("workflow", name, min_sequence=min_sequence, timeout=timeout)

    async def launch_plans(
        self, name: str | None = None, *, min_sequence: int = 0, timeout: float = QUERY_TIMEOUT_SECONDS
    ) -> list[EntitySummary]:
        """Registered launch plans, by name, each with its versions newest first."""
        return await self.entities("launch_plan", name, min_sequence=min_sequence, timeout=timeout)

    async def entities(
        self,
        kind: EntityKind,
        name: str | None = None,
        *,
        min_sequence: int = 0,
        timeout: float = QUERY_TIMEOUT_SECONDS,
    ) -> list[EntitySummary]:
        """Registered ``kind`` (task, workflow, launch_plan) entities by name, each with its versions newest first."""
        request = ListEntities(
            kind=kind, project=self.project, domain=self.domain, name=name, min_sequence=min_sequence
        )
        return (await self._ask(subjects.CATALOG_LIST_ENTITIES, request, EntityList, timeout)).entities

    async def show_entity(
        self,
        kind: EntityKind,
        name: str,
        version: str = LATEST,
        *,
        min_sequence: int = 0,
        timeout: float = QUERY_TIMEOUT_SECONDS,
    ) -> EntityDetail:
        """A registered ``kind`` (task, workflow, launch_plan) version: its spec and when it was registered."""
        request = ShowEntity(
            kind=kind, project=self.project, domain=self.domain, name=name, version=version, min_sequence=min_sequence
        )
        return (await self._ask(subjects.CATALOG_SHOW_ENTITY, request, EntityShown, timeout)).entity
