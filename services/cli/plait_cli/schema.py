"""``plait schema export``: JSON Schemas of everything plait puts on the wire, generated from its types."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec

from plait.core.commands import Command
from plait.core.dispatch import Dispatch
from plait.core.events import Decision, Registration

WIRE_TYPES: dict[str, Any] = {
    "command": Command,
    "decision": Decision,
    "dispatch": Dispatch,
    "registration": Registration,
}


def wire_schemas() -> dict[str, dict[str, Any]]:
    """File name → JSON Schema (draft 2020-12) of each record kind, generated with ``msgspec.json.schema``."""
    return {
        f"{name}.schema.json": {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": name,
            **msgspec.json.schema(kind),
        }
        for name, kind in WIRE_TYPES.items()
    }


def export_schemas(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in wire_schemas().items():
        path = directory / name
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written
