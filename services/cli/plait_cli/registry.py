"""``plait tasks|workflows|launch-plans list|show``: registered entities and their versions."""

from __future__ import annotations

import msgspec
from rich.table import Table

from plait.client import LATEST
from plait.core.model import EntityKind
from plait.settings import Settings
from plait_cli.catalog_session import catalog_client, console, print_json, print_rows, when
from plait_cli.launch_plan_schedules import print_schedule


def parse_reference(reference: str) -> tuple[str, str]:
    """``NAME@VERSION`` as (name, version); a bare ``NAME`` means its latest version."""
    name, at, version = reference.rpartition("@")
    return (name, version or LATEST) if at else (reference, LATEST)


async def list_entities(settings: Settings, kind: EntityKind, as_json: bool) -> int:
    async with catalog_client(settings) as (client, position):
        entities = await client.entities(kind, min_sequence=position)
    if as_json:
        print_json(entities)
        return 0
    table = Table(box=None)
    for column in ("name", "latest version", "registered", "versions"):
        table.add_column(column)
    for entity in entities:
        newest = entity.versions[0]
        table.add_row(entity.name, newest.version, when(newest.registered_at), str(len(entity.versions)))
    kinds = kind.replace("_", " ") + "s"
    print_rows(table, f"no {kinds} registered in {settings.project}/{settings.domain}")
    return 0


async def show_entity(settings: Settings, kind: EntityKind, reference: str, as_json: bool) -> int:
    name, version = parse_reference(reference)
    async with catalog_client(settings) as (client, position):
        entity = await client.show_entity(kind, name, version, min_sequence=position)
        schedule = await client.launch_plan_schedule(name) if kind == "launch_plan" else None
    if as_json:
        print_json(entity)
        return 0
    out = console()
    out.print(f"[bold]{kind.replace('_', ' ')}[/] {entity.name}@{entity.version}", highlight=False)
    out.print(f"registered: {when(entity.registered_at)}", highlight=False)
    out.print_json(msgspec.json.encode(entity.spec).decode())
    if schedule is not None:
        print_schedule(schedule)
    return 0
