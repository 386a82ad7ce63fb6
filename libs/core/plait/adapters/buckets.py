"""plait's object store buckets (values, logs, code): made to refuse rollups, and written without one.

nats-py's object store writes an object's record with a rollup header, which its bucket must then allow; and a
stream that allows rollups takes one from anyone who may publish to it: ``Nats-Rollup: all`` on one chunk subject
empties the whole bucket, a purge no permission can confine (a task's credential may write to the buckets). So
plait's buckets refuse rollups, and an object is written here the way nats-py writes it (its chunks on a fresh
nuid's subject, then its record, nats-py's ``ObjectInfo``, on the name's meta subject) except that the record is
appended rather than rolled up. Readers are nats-py's: a name's record is the last one on its subject.

A name written again (the same content by a second writer, an attempt's output once more) leaves the earlier copy's
record and chunks in the bucket, unread, until the bucket's age limit or an operator removes them
(``delete_object``: a purge, which only the operator may do where NATS confines its users).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import json
from datetime import UTC, datetime
from typing import IO

import anyio.to_thread
import nats.js.errors
from nats.js import JetStreamContext, api
from nats.js.object_store import (
    OBJ_CHUNKS_PRE_TEMPLATE,
    OBJ_DEFAULT_CHUNK_SIZE,
    OBJ_DIGEST_TEMPLATE,
    OBJ_META_PRE_TEMPLATE,
    OBJ_STREAM_TEMPLATE,
    ObjectStore,
)
from nats.nuid import NUID

_nuid = NUID()


def bucket_stream(bucket: str) -> str:
    return OBJ_STREAM_TEMPLATE.format(bucket=bucket)


async def ensure_bucket(js: JetStreamContext, bucket: str, replicas: int | None = None) -> ObjectStore:
    """The bucket, created when missing (file storage, ``replicas``, default 1) and made to refuse rollups."""
    try:
        return await js.object_store(bucket)
    except nats.js.errors.BucketNotFoundError:
        pass
    try:
        made = await js.create_object_store(bucket, storage=api.StorageType.FILE, replicas=replicas or 1)
    except nats.js.errors.BadRequestError:  # made meanwhile by another, which already refused its rollups
        return await js.object_store(bucket)
    await refuse_rollups(js, bucket)
    return made


async def refuse_rollups(js: JetStreamContext, bucket: str) -> bool:
    """Make the bucket's stream refuse rollup headers; True when it took them until now (an earlier release's)."""
    config = (await js.stream_info(bucket_stream(bucket))).config
    if not config.allow_rollup_hdrs:
        return False
    await js.update_stream(dataclasses.replace(config, allow_rollup_hdrs=False))
    return True


async def put_object(
    js: JetStreamContext, bucket: str, name: str, data: bytes | IO[bytes], chunk_size: int = OBJ_DEFAULT_CHUNK_SIZE
) -> None:
    """Store ``data`` as object ``name`` of ``bucket``, readable with nats-py's ``ObjectStore.get``."""
    reader = io.BytesIO(data) if isinstance(data, bytes) else data
    in_memory = isinstance(reader, io.BytesIO)
    stream = bucket_stream(bucket)
    nuid = _nuid.next().decode()
    chunk_subject = OBJ_CHUNKS_PRE_TEMPLATE.format(bucket=bucket, obj=nuid)
    digest, size, chunks = hashlib.sha256(), 0, 0
    while True:
        block = reader.read(chunk_size) if in_memory else await anyio.to_thread.run_sync(reader.read, chunk_size)
        if not block:
            break
        digest.update(block)
        await js.publish(chunk_subject, block, stream=stream)
        size, chunks = size + len(block), chunks + 1
    info = api.ObjectInfo(
        name=name,
        bucket=bucket,
        nuid=nuid,
        size=size,
        chunks=chunks,
        mtime=datetime.now(UTC).isoformat(),
        digest=OBJ_DIGEST_TEMPLATE.format(digest=base64.urlsafe_b64encode(digest.digest()).decode()),
        options=api.ObjectMetaOptions(max_chunk_size=chunk_size),
    )
    await js.publish(_meta_subject(bucket, name), json.dumps(info.as_dict()).encode(), stream=stream)


async def delete_object(js: JetStreamContext, bucket: str, name: str) -> None:
    """Remove object ``name`` of ``bucket`` (its record, and the chunks it names): an operator's action (and the
    tests')."""
    store = await js.object_store(bucket)
    info = await store.get_info(name)
    stream = bucket_stream(bucket)
    await js.purge_stream(stream, subject=OBJ_CHUNKS_PRE_TEMPLATE.format(bucket=bucket, obj=info.nuid))
    await js.purge_stream(stream, subject=_meta_subject(bucket, name))


def _meta_subject(bucket: str, name: str) -> str:
    return OBJ_META_PRE_TEMPLATE.format(bucket=bucket, obj=base64.urlsafe_b64encode(name.encode()).decode())
