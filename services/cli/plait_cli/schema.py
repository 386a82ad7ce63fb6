"""``plait schema export``: JSON Schemas of everything plait puts on the wire, generated from plait.protocol.schema."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import msgspec

from plait.protocol.headers import MEANINGS
from plait.protocol.schema import CHANNELS, WIRE_TYPES

DRAFT = "https://json-schema.org/draft/2020-12/schema"
BUNDLE = "plait.schema.json"


def wire_schemas() -> dict[str, dict[str, Any]]:
    """File name → JSON Schema (draft 2020-12): one self-contained file per wire type, and ``plait.schema.json``,
    which holds them all over shared ``$defs`` along with every subject and header."""
    files = {
        f"{name}.schema.json": {"$schema": DRAFT, "title": name, **msgspec.json.schema(kind)}
        for name, kind in WIRE_TYPES.items()
    }
    schemas, components = msgspec.json.schema_components(WIRE_TYPES.values())
    files[BUNDLE] = {
        "$schema": DRAFT,
        "title": "plait wire format",
        "$defs": components,
        "types": dict(zip(WIRE_TYPES, schemas, strict=True)),
        "subjects": [dataclasses.asdict(channel) for channel in CHANNELS],
        "headers": MEANINGS,
    }
    return files


def export_schemas(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in wire_schemas().items():
        path = directory / name
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written
