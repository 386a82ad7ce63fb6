"""Catalog queries of the registry: registered tasks, workflows and launch plans, and their versions."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec

from plait.core.model import EntityKind
from plait.protocol.queries import NonEmpty, StreamSequence

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
