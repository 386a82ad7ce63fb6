"""Registry queries: registered tasks, workflows and launch plans, and their versions."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from plait_catalog.db import Connection
from plait_catalog.queries import ErrorReply, StreamSequence, error_reply

EntityKind = Literal["task", "workflow", "launch_plan"]
NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]
LATEST = "latest"


class ListEntities(msgspec.Struct, frozen=True, kw_only=True):
    """``plait.catalog.registry.list``: names of one kind (in name order), each with its versions newest first."""

    kind: EntityKind
    project: NonEmpty
    domain: NonEmpty
    name: str | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 500  # names, not versions
    min_sequence: StreamSequence = 0


class ShowEntity(msgspec.Struct, frozen=True, kw_only=True):
    """``plait.catalog.registry.show``: one version's spec; ``"latest"`` is the one registered last."""

    kind: EntityKind
    project: NonEmpty
    domain: NonEmpty
    name: NonEmpty
    version: NonEmpty = LATEST
    min_sequence: StreamSequence = 0


class EntityVersion(msgspec.Struct, kw_only=True):
    version: str
    registered_at: datetime


class EntitySummary(msgspec.Struct, kw_only=True):
    name: str
    versions: list[EntityVersion]


class EntityList(msgspec.Struct, kw_only=True):
    kind: EntityKind
    entities: list[EntitySummary]


class EntityDetail(msgspec.Struct, kw_only=True):
    kind: EntityKind
    project: str
    domain: str
    name: str
    version: str
    registered_at: datetime
    spec: Any


class EntityShown(msgspec.Struct, kw_only=True):
    entity: EntityDetail


_LIST = """
SELECT name, version, registered_at FROM registry_entities
WHERE kind = $1 AND project = $2 AND domain = $3 AND name IN (
    SELECT DISTINCT name FROM registry_entities
    WHERE kind = $1 AND project = $2 AND domain = $3 AND ($4::text IS NULL OR name = $4)
    ORDER BY name LIMIT $5
)
ORDER BY name, sequence DESC
"""

_SHOW = """
SELECT kind, project, domain, name, version, registered_at, spec FROM registry_entities
WHERE kind = $1 AND project = $2 AND domain = $3 AND name = $4 AND ($5::text IS NULL OR version = $5)
ORDER BY sequence DESC LIMIT 1
"""


async def list_entities(connection: Connection, request: ListEntities) -> EntityList:
    rows = await connection.fetch(_LIST, request.kind, request.project, request.domain, request.name, request.limit)
    entities: dict[str, EntitySummary] = {}
    for row in rows:
        summary = entities.setdefault(row["name"], EntitySummary(name=row["name"], versions=[]))
        summary.versions.append(EntityVersion(version=row["version"], registered_at=row["registered_at"]))
    return EntityList(kind=request.kind, entities=list(entities.values()))


async def show_entity(connection: Connection, request: ShowEntity) -> EntityShown | ErrorReply:
    version = None if request.version == LATEST else request.version
    row = await connection.fetchrow(_SHOW, request.kind, request.project, request.domain, request.name, version)
    if row is None:
        what = f"{request.kind.replace('_', ' ')} '{request.name}'"
        where = f"{request.project}/{request.domain}"
        if version is None:
            return error_reply("not_found", f"{what} is not registered in {where}")
        return error_reply("not_found", f"{what} has no version '{version}' in {where}")
    return EntityShown(entity=EntityDetail(**dict(row)))
