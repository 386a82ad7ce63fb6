"""plait's object store buckets refuse rollups, which would let any writer empty one, and are written without one;
nats-py reads what plait writes. On a real nats-server."""

from __future__ import annotations

import io

import nats.js.errors
import pytest

from plait.adapters.buckets import delete_object, put_object
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


async def test_an_object_is_written_without_a_rollup_and_read_back_by_nats_py(nats_url: str) -> None:
    nc = await connect(nats_url, "test-buckets")
    try:
        js = nc.jetstream()
        await ensure_streams(js)
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
    finally:
        await nc.close()
