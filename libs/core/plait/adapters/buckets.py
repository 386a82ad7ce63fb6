"""plait's object store buckets (values, logs, code): made to refuse rollups, and written without one.

nats-py's object store writes an object's record with a rollup header, which its bucket must then allow; and a
stream that allows rollups takes one from anyone who may publish to it: ``Nats-Rollup: all`` on one chunk subject
empties the whole bucket, a purge no permission can confine (a task's credential may write to the buckets). So
plait's buckets refuse rollups, and an object is written here the way nats-py writes it (its chunks on a fresh
nuid's subject, then its record, nats-py's ``ObjectInfo``, on the name's meta subject) except that the record is
appended rather than rolled up. A name's record is the last one on its subject, and nats-py's readers read it.

An object's chunks are read here too (``read_object``), through a flow-controlled push consumer, as nats-py's
``ObjectStore.get`` does, but answering each flow control request as it comes: nats-py's ordered consumer took
~8 ms a chunk (a 4 MB object in 270 ms; here 7-10 ms), its ``writeinto`` a thread hop per chunk besides.

A name written again (the same content by a second writer, an attempt's output once more) leaves the earlier copy's
record and chunks in the bucket, unread, until the bucket's age limit or an operator removes them
(``delete_object``: a purge, which only the operator may do where NATS confines its users).
"""

from __future__ import annotations

import base64
import contextlib
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
    OBJ_DIGEST_TYPE,
    OBJ_META_PRE_TEMPLATE,
    OBJ_STREAM_TEMPLATE,
    ObjectStore,
)
from nats.nuid import NUID

from plait.adapters.scoped_reads import subject_messages

_nuid = NUID()
WRITE_BATCH_CHUNKS = 16  # chunks written to a file per hop to a thread: 2 MiB at the default chunk size


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


async def read_object(
    js: JetStreamContext,
    store: ObjectStore,
    bucket: str,
    name: str,
    into: IO[bytes],
    info: api.ObjectInfo | None = None,
) -> None:
    """Write object ``name`` of ``bucket`` (``store``: nats-py's handle on it) into ``into``, checked against its
    size and digest; ``info``: its record, when the caller has read it already. Raises nats-py's
    ``ObjectNotFoundError`` (no such object) and ``DigestMismatchError`` (its chunks are not what its record says),
    and ``nats.errors.Error`` when NATS is away."""
    if info is None:
        info = await store.get_info(name)
    if info.is_link():  # plait writes no links: nats-py follows one
        await store.get(name, writeinto=into)  # type: ignore[arg-type]
        return
    if not info.size:
        return
    in_memory = isinstance(into, io.BytesIO)
    digest, size, unwritten = hashlib.sha256(), 0, []
    chunk_subject = OBJ_CHUNKS_PRE_TEMPLATE.format(bucket=bucket, obj=info.nuid)
    chunks = subject_messages(js, bucket_stream(bucket), chunk_subject, flow_control=True)
    async with contextlib.aclosing(chunks):
        async for chunk in chunks:
            data = chunk.data or b""
            digest.update(data)
            size += len(data)
            if size > info.size:
                raise nats.js.errors.DigestMismatchError
            unwritten.append(data)
            if in_memory or len(unwritten) >= WRITE_BATCH_CHUNKS:
                await _write(into, unwritten, in_memory)
                unwritten = []
    await _write(into, unwritten, in_memory)
    expected = base64.urlsafe_b64decode(info.digest.removeprefix(OBJ_DIGEST_TYPE)) if info.digest else b""
    if size != info.size or digest.digest() != expected:
        raise nats.js.errors.DigestMismatchError


async def _write(into: IO[bytes], blocks: list[bytes], in_memory: bool) -> None:
    """A file is written off the event loop, a batch of chunks at a time; memory at once."""
    if in_memory:
        for block in blocks:
            into.write(block)
    elif blocks:
        await anyio.to_thread.run_sync(into.writelines, blocks)


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
