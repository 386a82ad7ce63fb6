"""The executor's view of its Jobs and their pods: listed once, then followed by watches.

A watch that ends (the API server's timeout, a restart, a dropped connection) is resumed from the last
resource version seen; one answered with 410 Gone (that version was compacted away) is replaced by a new list,
and Jobs missing from it are known as deleted.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
import anyio
import anyio.abc
import structlog
from kubernetes_asyncio.client import ApiClient, BatchV1Api, CoreV1Api
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.watch import Watch
from structlog.typing import FilteringBoundLogger

from plait_executor.kubernetes.batches import attempts_of_job

log: FilteringBoundLogger = structlog.get_logger("plait.executor.kubernetes")

JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
RECENT_DELETIONS = 64  # of Jobs no attempt follows yet: enough for a map Job deleted before its items follow it
WATCH_SECONDS = 240  # the server ends each watch after this long; it is resumed at once
FIRST_RETRY_SECONDS = 0.1
LONGEST_RETRY_SECONDS = 5.0

Lister = Callable[..., Awaitable[Any]]


class ClusterView:
    """The Jobs and pods of one namespace that match ``label_selector``, as last seen, by name.

    ``changed`` is set (and replaced) on every change; ``was_deleted(name)`` says whether Job ``name`` was seen
    deleted while an attempt was ``following`` it, or among the last ``RECENT_DELETIONS`` (a map Job is created
    before the attempts it places follow it); ``items`` gives the map Job and the index of each item attempt a map
    Job runs (from its ``plait.dev/attempts`` annotation). What it keeps is bounded by what runs, not by history.
    """

    def __init__(self, client: ApiClient, namespace: str, label_selector: str) -> None:
        self.namespace = namespace
        self.label_selector = label_selector
        self.jobs: dict[str, dict[str, Any]] = {}
        self.pods: dict[str, dict[str, Any]] = {}
        self.deleted: set[str] = set()  # of the Jobs followed
        self.recently_deleted: dict[str, None] = {}  # the last RECENT_DELETIONS, oldest first
        self._followers: dict[str, int] = {}  # how many attempts follow each Job
        self.items: dict[str, tuple[str, int]] = {}
        self._items_of: dict[str, list[str]] = {}  # the attempts of each map Job known
        self.changed = anyio.Event()
        self._batch = BatchV1Api(client)
        self._core = CoreV1Api(client)

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Follow Jobs and pods until cancelled; ``task_status.started()`` once both were listed."""
        jobs_listed, pods_listed = anyio.Event(), anyio.Event()
        async with anyio.create_task_group() as group:
            group.start_soon(self._follow, "jobs", self._batch.list_namespaced_job, self.jobs, jobs_listed)
            group.start_soon(self._follow, "pods", self._core.list_namespaced_pod, self.pods, pods_listed)
            await jobs_listed.wait()
            await pods_listed.wait()
            task_status.started()

    @contextmanager
    def following(self, job: str) -> Iterator[None]:
        """While in it, a deletion of Job ``job`` is kept (``was_deleted``)."""
        self._followers[job] = self._followers.get(job, 0) + 1
        try:
            yield
        finally:
            self._followers[job] -= 1
            if not self._followers[job]:
                del self._followers[job]
                self.deleted.discard(job)

    def was_deleted(self, job: str) -> bool:
        return job in self.deleted or job in self.recently_deleted

    def pods_of(self, job: str, index: int | None = None) -> list[dict[str, Any]]:
        """The pods of Job ``job`` (of its completion ``index`` when given) still known, oldest first."""
        found = [
            pod
            for pod in self.pods.values()
            if (labels := pod["metadata"].get("labels", {})).get(JOB_NAME_LABEL) == job
            and (index is None or labels.get(COMPLETION_INDEX) == str(index))
        ]
        return sorted(found, key=lambda pod: pod["metadata"].get("creationTimestamp", ""))

    async def _follow(
        self, resource: str, lister: Lister, objects: dict[str, dict[str, Any]], listed: anyio.Event
    ) -> None:
        version: str | None = None
        delay = FIRST_RETRY_SECONDS
        while True:
            try:
                if version is None:
                    version = await self._list(resource, lister, objects)
                    listed.set()
                watch = Watch(return_type="object")
                async with watch:
                    stream = watch.stream(
                        lister,
                        self.namespace,
                        label_selector=self.label_selector,
                        resource_version=version,
                        timeout_seconds=WATCH_SECONDS,
                    )
                    async for event in stream:
                        self._apply(resource, objects, event["type"], event["raw_object"])
                        version = watch.resource_version or version
                delay = FIRST_RETRY_SECONDS
                continue  # the watch ended: resume it from the last version seen
            except ApiException as exc:
                if exc.status == 410:
                    log.info("watch_expired", resource=resource, version=version)
                    version = None  # compacted away: list again
                    continue
                log.warning("watch_failed", resource=resource, status=exc.status, reason=exc.reason, retry_in=delay)
            except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError) as exc:
                log.warning("watch_failed", resource=resource, error=repr(exc), retry_in=delay)
            await anyio.sleep(delay)
            delay = min(delay * 2, LONGEST_RETRY_SECONDS)

    async def _list(self, resource: str, lister: Lister, objects: dict[str, dict[str, Any]]) -> str:
        response = await lister(self.namespace, label_selector=self.label_selector, _preload_content=False)
        body = json.loads(await response.read())
        listed = {item["metadata"]["name"]: item for item in body.get("items", [])}
        if resource == "jobs":
            for name in objects.keys() - listed.keys():
                self._record_deletion(name)
            for name, job in listed.items():
                self._know_items(name, job)
        objects.clear()
        objects.update(listed)
        self._signal()
        version: str = body["metadata"]["resourceVersion"]
        return version

    def _apply(self, resource: str, objects: dict[str, dict[str, Any]], kind: str, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        if kind == "DELETED":
            objects.pop(name, None)
            if resource == "jobs":
                self._record_deletion(name)
        elif kind in ("ADDED", "MODIFIED"):
            objects[name] = obj
            if resource == "jobs":
                self.deleted.discard(name)
                self.recently_deleted.pop(name, None)
                self._know_items(name, obj)
        else:
            return
        self._signal()

    def _record_deletion(self, name: str) -> None:
        self._forget_items(name)
        if name in self._followers:
            self.deleted.add(name)
        self.recently_deleted.pop(name, None)
        self.recently_deleted[name] = None
        if len(self.recently_deleted) > RECENT_DELETIONS:
            del self.recently_deleted[next(iter(self.recently_deleted))]

    def _know_items(self, name: str, job: dict[str, Any]) -> None:
        if name in self._items_of:
            return
        attempts = attempts_of_job(job)
        if attempts is not None:
            self._items_of[name] = attempts
            self.items.update({attempt: (name, index) for index, attempt in enumerate(attempts)})

    def _forget_items(self, name: str) -> None:
        for attempt in self._items_of.pop(name, []):
            if self.items.get(attempt, (None,))[0] == name:
                del self.items[attempt]

    def _signal(self) -> None:
        changed, self.changed = self.changed, anyio.Event()
        changed.set()
