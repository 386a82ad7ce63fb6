"""docs/wire-format.md cannot drift from plait.protocol: it names every subject, header and schema of the registry."""

from __future__ import annotations

from pathlib import Path

from plait.protocol.headers import MEANINGS
from plait.protocol.schema import CHANNELS, EMBEDDED_TYPES, WIRE_TYPES

DOC = (Path(__file__).parents[2] / "docs" / "wire-format.md").read_text()


def unnamed(names: list[str]) -> list[str]:
    return [name for name in names if f"`{name}`" not in DOC]


def test_the_doc_names_every_subject() -> None:
    assert unnamed([channel.subject for channel in CHANNELS]) == []


def test_the_doc_names_every_header() -> None:
    assert unnamed(list(MEANINGS)) == []


def test_the_doc_names_every_exported_schema() -> None:
    assert unnamed(list(WIRE_TYPES)) == []


def test_every_subject_carries_and_answers_registered_types() -> None:
    named = {name for channel in CHANNELS for name in (channel.carries, *channel.answers)}
    assert named <= set(WIRE_TYPES)
    assert set(WIRE_TYPES) - EMBEDDED_TYPES <= named, "a registered type that no subject carries"
