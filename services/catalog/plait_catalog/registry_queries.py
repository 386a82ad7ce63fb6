"""Registry queries: registered tasks, workflows and launch plans, and their versions."""

from __future__ import annotations

from plait.protocol.queries import ErrorReply, error_reply
from plait.protocol.registry import (
    LATEST,
    EntityDetail,
    EntityList,
    EntityShown,
    EntitySummary,
    EntityVersion,
    ListEntities,
    ShowEntity,
)
from plait_catalog.db import Connection

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
