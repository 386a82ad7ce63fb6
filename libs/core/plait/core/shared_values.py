"""Values that several events of one decision pass on, stored once in the decision.

A value read by eight tasks is in the producer's ``NodeSucceeded`` and in each reader's ``NodeQueued``: nine
copies in one record. ``share_repeated`` moves each large value that stands in more than one place of a
decision's events' ``inputs`` or ``outputs`` into ``Decision.shared``, with the places it goes, and leaves
``None`` there; ``restore_shared`` puts it back. Readers decode with ``restore_shared`` applied, so every
other part of plait sees whole events.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import msgspec

from plait.core.events import Decision, Event, SharedValue

SHARED_FIELDS = ("inputs", "outputs")
MIN_SHARED_BYTES = 1024
"""A value is shared only from this size on: below it, listing its places costs about as much as the copies."""

_encoder = msgspec.json.Encoder()


def share_repeated(decision: Decision, min_bytes: int = MIN_SHARED_BYTES) -> Decision:
    """The decision with each value of at least ``min_bytes`` that stands in several places stored once."""
    places: dict[bytes, list[tuple[int, str, str]]] = defaultdict(list)
    values: dict[bytes, Any] = {}
    for index, event in enumerate(decision.events):
        for field, mapping in _mappings(event):
            for name, value in mapping.items():
                encoded = _encoder.encode(value)
                if len(encoded) >= min_bytes:
                    places[encoded].append((index, field, name))
                    values[encoded] = value
    shared = [SharedValue(value=values[key], at=tuple(at)) for key, at in places.items() if len(at) > 1]
    if not shared:
        return decision
    events = _placed(list(decision.events), ((place, None) for value in shared for place in value.at))
    return msgspec.structs.replace(decision, events=tuple(events), shared=tuple(shared))


def restore_shared(decision: Decision) -> Decision:
    """The decision with its shared values back in every place they stand; ``msgspec.ValidationError`` when a
    place names no event's mapping."""
    if not decision.shared:
        return decision
    events = _placed(list(decision.events), ((place, value.value) for value in decision.shared for place in value.at))
    return msgspec.structs.replace(decision, events=tuple(events), shared=())


def _mappings(event: Event) -> list[tuple[str, dict[str, Any]]]:
    found = ((field, getattr(event, field, None)) for field in SHARED_FIELDS)
    return [(field, mapping) for field, mapping in found if isinstance(mapping, dict)]


def _placed(events: list[Event], placements: Any) -> list[Event]:
    """``events`` with each ((event index, field, name), value) of ``placements`` set."""
    changed: dict[tuple[int, str], dict[str, Any]] = {}
    for (index, field, name), value in placements:
        if not 0 <= index < len(events) or field not in SHARED_FIELDS:
            raise msgspec.ValidationError(f"a shared value's place ({index}, {field!r}) names no event's mapping")
        if (index, field) not in changed:
            mapping = getattr(events[index], field, None)
            if not isinstance(mapping, dict) or name not in mapping:
                raise msgspec.ValidationError(
                    f"a shared value's place ({index}, {field!r}, {name!r}) is not in the event"
                )
            changed[index, field] = dict(mapping)
        changed[index, field][name] = value
    for (index, field), mapping in changed.items():
        events[index] = msgspec.structs.replace(events[index], **{field: mapping})
    return events
