"""plait's object store buckets refuse rollups, which would let any writer empty one, and are written without one;
nats-py reads what plait writes, and so does plait's own reader, which refuses damaged chunks. On a real
nats-server."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import nats.js.errors
import pytest
from nats.js import JetStreamContext

from plait.adapters.buckets import delete_object, put_object, read_object
from plait.adapters.connection import connect
from plait.adapters.streams import ensure_streams
from plait.protocol import subjects

BUCKETS = (subjects.VALUES_BUCKET, subjects.LOGS_BUCKET, subjects.CODE_BUCKET)


async def test_an_earlier_releases_buckets_are_made_to_refuse_rollups_and_keep_their_objects(nats_url: str) -> None:
    nc = await connect(nats_url, "test-buckets")
    try:
        js = nc.jetstream()
        for bucket in BUCKETS:  # as an earlier release made them: nats-py's, taking rollups
            store = await js.create_object_store(bucket)
            await store.put("before", b"kept")
        actions = {done.name: done.action for done in await ensure_streams(js)}
        for bucket in BUCKETS:
            stream = f"OBJ_{bucket}"
            assert actions[stream] == "updated"
            assert (await js.stream_info(stream)).config.allow_rollup_hdrs is False
            assert (await (await js.object_store(bucket)).get("before")).data == b"kept"
            with pytest.raises(nats.js.errors.APIError, match="rollup not permitted"):
                await js.publish(f"$O.{bucket}.C.any", b"", headers={"Nats-Rollup": "all"}, stream=stream)
            assert (await (await js.object_store(bucket)).get("before")).data == b"kept", "nothing was rolled up"
        again = {done.name: done.action for done in await ensure_streams(js)}
        assert {again[f"OBJ_{bucket}"] for bucket in BUCKETS} == {"unchanged"}
    finally:
        await nc.close()


async def test_an_object_is_written_without_a_rollup_and_read_back_by_nats_py(js: JetStreamContext) -> None:
    store = await js.object_store(subjects.VALUES_BUCKET)
    large = bytes(range(256)) * 2000  # 512,000 bytes: four chunks of 128 KiB
    await put_object(js, subjects.VALUES_BUCKET, "large", io.BytesIO(large))
    await put_object(js, subjects.VALUES_BUCKET, "empty", b"")
    info = await store.get_info("large")
    assert (info.size, info.chunks) == (len(large), 4)
    assert (await store.get("large")).data == large  # nats-py checks the digest
    assert (await store.get("empty")).data == b""

    await put_object(js, subjects.VALUES_BUCKET, "again", b"first")
    await put_object(js, subjects.VALUES_BUCKET, "again", b"second")
    assert (await store.get("again")).data == b"second", "a name's last record is the one read"

    await delete_object(js, subjects.VALUES_BUCKET, "large")
    with pytest.raises(nats.js.errors.ObjectNotFoundError):
        await store.get_info("large")


async def test_read_object_gives_back_what_was_written_into_memory_or_a_file(
    js: JetStreamContext, tmp_path: Path
) -> None:
    store = await js.object_store(subjects.VALUES_BUCKET)
    # 24 MiB and some: 193 chunks, more than the leader pushes before it waits for a flow control answer
    large = hashlib.sha256(b"seed").digest() * (24 * 32768 + 5)
    await put_object(js, subjects.VALUES_BUCKET, "large", large)
    await put_object(js, subjects.VALUES_BUCKET, "empty", b"")
    in_memory = io.BytesIO()
    await read_object(js, store, subjects.VALUES_BUCKET, "large", in_memory)
    assert in_memory.getvalue() == large
    with (tmp_path / "large").open("wb") as file:
        await read_object(js, store, subjects.VALUES_BUCKET, "large", file)
    assert (tmp_path / "large").read_bytes() == large
    empty = io.BytesIO()
    await read_object(js, store, subjects.VALUES_BUCKET, "empty", empty)
    assert empty.getvalue() == b""
    with pytest.raises(nats.js.errors.ObjectNotFoundError):
        await read_object(js, store, subjects.VALUES_BUCKET, "never-written", io.BytesIO())


async def test_read_object_refuses_an_object_whose_chunks_are_not_what_its_record_says(js: JetStreamContext) -> None:
    store = await js.object_store(subjects.VALUES_BUCKET)
    stream = f"OBJ_{subjects.VALUES_BUCKET}"
    for name, damage in (("short", "delete"), ("long", "append")):
        await put_object(js, subjects.VALUES_BUCKET, name, bytes(300_000), chunk_size=100_000)
        chunk_subject = f"$O.{subjects.VALUES_BUCKET}.C.{(await store.get_info(name)).nuid}"
        if damage == "delete":
            middle = await js.get_msg(stream, seq=1, next=True, subject=chunk_subject)
            await js.delete_msg(stream, middle.seq or 0)
        else:
            await js.publish(chunk_subject, b"extra", stream=stream)
        with pytest.raises(nats.js.errors.DigestMismatchError):
            await read_object(js, store, subjects.VALUES_BUCKET, name, io.BytesIO())
    await put_object(js, subjects.VALUES_BUCKET, "altered", bytes(1000))
    chunk_subject = f"$O.{subjects.VALUES_BUCKET}.C.{(await store.get_info('altered')).nuid}"
    only = await js.get_msg(stream, seq=1, next=True, subject=chunk_subject)
    await js.delete_msg(stream, only.seq or 0)
    await js.publish(chunk_subject, bytes(999) + b"x", stream=stream)
    with pytest.raises(nats.js.errors.DigestMismatchError):
        await read_object(js, store, subjects.VALUES_BUCKET, "altered", io.BytesIO())
