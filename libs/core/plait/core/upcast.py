"""Event schema evolution: upcasters rewrite stored events of an old version into the current one.

An event's tag carries its version (``node_succeeded.v1``). When a release changes an event, it gives
the new shape a new tag and registers an upcaster from the old tag: a function from the old raw JSON
object to the next version's. Upcasters chain (v0 → v1 → v2), so history written by any older release
still decodes into today's types. They work on plain decoded JSON, before typed decoding.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

RawEvent = dict[str, Any]
Upcaster = Callable[[RawEvent], RawEvent]

TAG_FIELD = "type"

UPCASTERS: Mapping[str, Upcaster] = {}
"""Old event tag → upcaster. Empty while every stored event is of its first version."""

MAX_CHAIN = 64


def upcast_event(raw: RawEvent, upcasters: Mapping[str, Upcaster] = UPCASTERS) -> RawEvent:
    """``raw`` rewritten by the upcasters of its tag, one version after another, up to the current one."""
    for _ in range(MAX_CHAIN):
        upcaster = upcasters.get(raw.get(TAG_FIELD, ""))
        if upcaster is None:
            return raw
        raw = upcaster(raw)
    raise ValueError(f"the upcasters of event type '{raw.get(TAG_FIELD)}' loop")


def upcast_decision(raw: RawEvent, upcasters: Mapping[str, Upcaster] = UPCASTERS) -> tuple[RawEvent, bool]:
    """A raw decision with each of its events upcast, and whether any event changed."""
    events = raw.get("events")
    if not isinstance(events, list):
        return raw, False
    upcast = [upcast_event(event, upcasters) if isinstance(event, dict) else event for event in events]
    changed = any(new is not old for new, old in zip(upcast, events, strict=True))
    return ({**raw, "events": upcast} if changed else raw), changed
