"""The logs bucket: what each attempt wrote (stdout, stderr, Python logging), one object per attempt.

A bucket of its own, not the values bucket: its objects are named by attempt, not by content (a re-run of an
attempt replaces its object), nothing else refers to them (no cache entry, no lineage), and so they may be
dropped on their own schedule (a ``max_age`` on the bucket) without ever breaking a value a reader needs.
"""

from __future__ import annotations

import io

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.object_store import ObjectStore

from plait.adapters.buckets import ensure_bucket, put_object, read_object
from plait.core.task_output import OutputRef
from plait.protocol.subjects import LOGS_BUCKET


async def ensure_logs_bucket(js: JetStreamContext, replicas: int | None = None) -> ObjectStore:
    """The logs bucket, created (file storage, ``replicas``, default 1) when missing."""
    return await ensure_bucket(js, LOGS_BUCKET, replicas)


class OutputStore:
    """Attempts' outputs in and out of the logs bucket."""

    def __init__(self, js: JetStreamContext) -> None:
        self.js = js
        self._bucket: ObjectStore | None = None

    async def _objects(self) -> ObjectStore:
        if self._bucket is None:
            self._bucket = await ensure_logs_bucket(self.js)
        return self._bucket

    async def put(self, name: str, data: bytes) -> None:
        await self._objects()
        await put_object(self.js, LOGS_BUCKET, name, data)

    async def read(self, ref: OutputRef) -> str | None:
        """The output ``ref`` names, as text; None when the bucket no longer holds it."""
        output = io.BytesIO()
        try:
            await read_object(self.js, await self._objects(), LOGS_BUCKET, ref.name, output)
        except nats.js.errors.ObjectNotFoundError:
            return None
        return output.getvalue().decode(errors="replace")
