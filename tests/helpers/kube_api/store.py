"""Objects, their resource versions and their watch events, as etcd and the API server's watch cache keep them.

One counter numbers every change of every object (a resource version is an etcd revision); each change is kept as
an event until ``compact`` drops the history, after which a watch from an older version gets 410 Expired.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from tests.helpers.kube_api.selectors import LabelSelector
from tests.helpers.kube_api.status import expired

EventType = Literal["ADDED", "MODIFIED", "DELETED"]
Key = tuple[str, str, str]  # resource, namespace, name


@dataclass(frozen=True)
class WatchEvent:
    version: int
    resource: str
    namespace: str
    type: EventType
    object: dict[str, Any]

    def as_line(self) -> dict[str, Any]:
        return {"type": self.type, "object": self.object}


@dataclass(eq=False)
class Watcher:
    """One open watch: the events for it, queued as they happen; ``None`` ends it."""

    resource: str
    namespace: str | None
    selector: LabelSelector
    events: asyncio.Queue[WatchEvent | None] = field(default_factory=asyncio.Queue)
    abort_connection: bool = False

    def wants(self, event: WatchEvent) -> bool:
        return (
            event.resource == self.resource
            and self.namespace in (None, event.namespace)
            and self.selector.matches(event.object["metadata"].get("labels"))
        )


class ObjectStore:
    def __init__(self) -> None:
        self.version = 0
        self.compacted = 0  # the history holds every event after this version
        self._objects: dict[Key, dict[str, Any]] = {}
        self._history: list[WatchEvent] = []
        self._last: dict[tuple[str, str, str], dict[str, Any]] = {}  # every object's last state, deleted ones too
        self._watchers: set[Watcher] = set()
        self._changed = asyncio.Event()

    def get(self, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        found = self._objects.get((resource, namespace, name))
        return copy.deepcopy(found) if found is not None else None

    def list(self, resource: str, namespace: str | None, selector: LabelSelector) -> list[dict[str, Any]]:
        return [copy.deepcopy(obj) for obj in self._select(resource, namespace, selector)]

    def put(self, resource: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Create or replace ``obj`` under a new resource version; returns the stored copy."""
        metadata = obj["metadata"]
        key = (resource, metadata["namespace"], metadata["name"])
        kind: EventType = "MODIFIED" if key in self._objects else "ADDED"
        self._objects[key] = self._record(resource, kind, obj)
        return copy.deepcopy(self._objects[key])

    def remove(self, resource: str, namespace: str, name: str) -> dict[str, Any]:
        return self._record(resource, "DELETED", self._objects.pop((resource, namespace, name)))

    def watch(self, resource: str, namespace: str | None, selector: LabelSelector, since: int | None) -> Watcher:
        """A watch from ``since``: the events after it, or, when it is None or 0, the current objects as ADDED
        events first (the API server's "start at most recent" and "any" semantics)."""
        watcher = Watcher(resource, namespace, selector)
        if not since:
            for obj in self._select(resource, namespace, selector):
                version = int(obj["metadata"]["resourceVersion"])
                watcher.events.put_nowait(WatchEvent(version, resource, obj["metadata"]["namespace"], "ADDED", obj))
        else:
            if since < self.compacted:
                raise expired(since, self.compacted + 1)
            for event in self._history:
                if event.version > since and watcher.wants(event):
                    watcher.events.put_nowait(event)
        self._watchers.add(watcher)
        return watcher

    def unwatch(self, watcher: Watcher) -> None:
        self._watchers.discard(watcher)

    def drop_watches(self, abort_connection: bool) -> int:
        """End every open watch (after the events already queued for it); returns how many there were."""
        dropped = len(self._watchers)
        for watcher in self._watchers:
            watcher.abort_connection = abort_connection
            watcher.events.put_nowait(None)
        self._watchers.clear()
        return dropped

    def compact(self) -> None:
        """Drop the history up to now, as etcd's compaction does: watches from older versions get 410."""
        self.compacted = self.version
        self._history.clear()

    def ever(self, resource: str, namespace: str) -> dict[str, dict[str, Any]]:
        """Every object of ``resource`` ever stored in ``namespace`` (deleted ones too), by name, in its last state:
        for tests that look after the fact at objects a controller may already have deleted."""
        return {name: obj for (kind, where, name), obj in self._last.items() if (kind, where) == (resource, namespace)}

    async def wait_until(self, found: Callable[[], Any]) -> Any:
        """``found()`` once it is truthy, checked after every change."""
        while not (result := found()):
            changed = self._changed
            await changed.wait()
        return result

    def _select(self, resource: str, namespace: str | None, selector: LabelSelector) -> Iterator[dict[str, Any]]:
        for (kind, where, _), obj in self._objects.items():
            if kind == resource and namespace in (None, where) and selector.matches(obj["metadata"].get("labels")):
                yield obj

    def _record(self, resource: str, kind: EventType, obj: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        stored = copy.deepcopy(obj)
        stored["metadata"]["resourceVersion"] = str(self.version)
        event = WatchEvent(self.version, resource, stored["metadata"]["namespace"], kind, copy.deepcopy(stored))
        self._history.append(event)
        self._last[(resource, event.namespace, stored["metadata"]["name"])] = event.object
        for watcher in self._watchers:
            if watcher.wants(event):
                watcher.events.put_nowait(event)
        self._changed.set()
        self._changed = asyncio.Event()
        return stored
