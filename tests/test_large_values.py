"""Values too large for an event travel through the values bucket: the events carry references, the tasks and the
client get the values, caching and lineage count a value the same inline or by reference, and a reference to an
object no longer stored fails its node with a clear system error."""

from __future__ import annotations

import contextlib
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import IO, Any

import anyio
import msgspec
import nats
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from plait import File, codec
from plait.adapters.object_store import InMemoryObjects, JetStreamObjects, Objects, ValueMissing, ValueStore
from plait.client import ArtifactNode, AsyncClient, NodeExecutionNode
from plait.core.events import Event, ExecutionLaunched, NodeCacheHit, NodeQueued, NodeSucceeded
from plait.core.ids import cache_key, value_hash
from plait.core.values import DEFAULT_INLINE_VALUE_LIMIT, as_ref, stored_list_length
from plait.protocol import subjects
from plait.replay import Record, replay
from plait_executor import ExecutorService
from plait_scheduler import SchedulerService
from tests import large_value_workflows
from tests.helpers.plait_command import plait_command_async
from tests.helpers.running import running
from tests.helpers.stack import services_and_client
from tests.helpers.states import final_state

MB = 1_000_000
LIMIT = DEFAULT_INLINE_VALUE_LIMIT


class MessageSizes:
    """The largest message published on plait's subjects (events, commands, timers, dispatch, cache) while
    watched: the work queues drop a message once it is acknowledged, so they are watched as they are published."""

    def __init__(self) -> None:
        self.largest, self.subject, self.count = 0, "", 0

    async def seen(self, msg: Msg) -> None:
        size = len(msg.data) + sum(len(k) + len(v) for k, v in (msg.headers or {}).items())
        self.count += 1
        if size > self.largest:
            self.largest, self.subject = size, msg.subject


@contextlib.asynccontextmanager
async def message_sizes(nc: NATS) -> AsyncIterator[MessageSizes]:
    sizes = MessageSizes()
    subscription = await nc.subscribe(f"{subjects.EVENTS_ROOT.split('.')[0]}.>", cb=sizes.seen)
    try:
        yield sizes
    finally:
        await nc.flush()
        await subscription.unsubscribe()


async def largest_stored_message(client: AsyncClient, stream: str) -> int:
    """The size of the largest message ``stream`` holds, read one by one."""
    info = await client.js.stream_info(stream)
    largest = 0
    for sequence in range(info.state.first_seq, info.state.last_seq + 1):
        with contextlib.suppress(Exception):  # a sequence a work queue has already dropped
            message = await client.js.get_msg(stream, sequence)
            largest = max(largest, len(message.data or b""))
    return largest


def events_of(records: list[Record]) -> Iterator[Event]:
    for record in records:
        yield from codec.decision_decoder.decode(record.data).events


def output_of(records: list[Record], node: str) -> Any:
    """The ``result`` output of ``node`` as its ``NodeSucceeded`` carries it."""
    succeeded = [e for e in events_of(records) if isinstance(e, NodeSucceeded) and e.node == node]
    assert len(succeeded) == 1
    return succeeded[0].outputs["result"]


@pytest.fixture
async def client(nats_url: str) -> AsyncIterator[AsyncClient]:
    scheduler = SchedulerService(nats_url, replica="values-scheduler", cache_lookup_seconds=0.2)
    executor = ExecutorService(nats_url, concurrency=2, replica="values-executor")
    async with running(scheduler.run, executor.run):
        async with await AsyncClient.connect(nats_url) as plait_client:
            yield plait_client


async def test_a_200_mb_value_passes_between_tasks_and_no_message_is_over_1_mb(
    nats_url: str, database_url: str
) -> None:
    """The producer's 200 MB of bytes go to the values bucket; every event, command and dispatch stays small; the
    reader gets the bytes; ``plait replay`` and ``plait audit verify`` read the execution."""
    domain = f"values-{uuid.uuid4().hex[:12]}"
    async with services_and_client(nats_url, database_url):
        async with await AsyncClient.connect(nats_url, domain=domain) as client:
            async with message_sizes(client.nc) as sizes:
                with anyio.fail_after(600):
                    handle = await client.launch(large_value_workflows.pass_bytes, {"size": 200 * MB})
                    assert await handle.result() == 200 * MB
            records = await client.records(handle.id)
            ref = as_ref(output_of(records, "big_bytes"))
            assert ref is not None and ref.kind == "value" and ref.size > 200 * MB
            holders = await client.same_value(ref.hash, min_sequence=records[-1].sequence)
            [made] = [a for a in holders.artifacts if a.producer == "attempt"]
            graph = await client.lineage(made.id, "both", depth=1, min_sequence=records[-1].sequence)
            env = {"PLAIT_NATS_URL": nats_url, "PLAIT_DOMAIN": domain}
            replayed = await plait_command_async(["replay", handle.id, "--json"], env)
            audited = await plait_command_async(["audit", "verify", handle.id], env)
            assert sizes.count > 0 and sizes.largest < MB, (sizes.largest, sizes.subject)
            for stream in (subjects.EVENTS_STREAM, subjects.COMMANDS_STREAM, subjects.DISPATCH_STREAM):
                assert await largest_stored_message(client, stream) < MB, stream
    nodes = {n.id: n for n in graph.nodes if isinstance(n, NodeExecutionNode)}
    assert {nodes[e.source].node for e in graph.edges if e.target == graph.root} == {"big_bytes"}
    assert {nodes[e.target].node for e in graph.edges if e.source == graph.root} == {"byte_count"}
    [artifact] = [n for n in graph.nodes if isinstance(n, ArtifactNode) and n.id == graph.root]
    assert (artifact.hash, artifact.size, artifact.node) == (ref.hash, ref.size, "big_bytes"), (
        "counted by its reference"
    )
    assert replay(records).outputs == {"result": 200 * MB}
    assert replayed.returncode == 0, replayed.stderr
    assert msgspec.json.decode(replayed.stdout)["status"] == "succeeded"
    assert audited.returncode == 0, audited.stdout + audited.stderr
    assert "0 problems" in audited.stderr


async def test_a_value_at_the_limit_stays_inline_and_one_byte_more_goes_by_reference(client: AsyncClient) -> None:
    """A string of n characters encodes to n + 2 bytes (its quotes)."""
    with anyio.fail_after(60):
        at_limit = await client.launch(large_value_workflows.blob_length, {"size": LIMIT - 2})
        over_limit = await client.launch(large_value_workflows.blob_length, {"size": LIMIT - 1})
        assert await at_limit.result() == LIMIT - 2
        assert await over_limit.result() == LIMIT - 1
    inline = output_of(await client.records(at_limit.id), "blob")
    assert inline == "x" * (LIMIT - 2)
    stored = as_ref(output_of(await client.records(over_limit.id), "blob"))
    assert stored is not None and stored.size == LIMIT + 1 and stored.hash == value_hash("x" * (LIMIT - 1))


async def test_a_large_input_hits_the_cache_under_the_key_its_inline_value_has(client: AsyncClient) -> None:
    """The client stores the 1 MB input; the task's cache key is the one the same value inline gives, and the
    second launch is a cache hit."""
    text = "t" * MB
    with anyio.fail_after(60):
        first = await client.launch(large_value_workflows.length_cached, {"text": text})
        assert await first.result() == MB
        second = await client.launch(large_value_workflows.length_cached, {"text": text})
        assert await second.result() == MB
    spec = large_value_workflows.cached_length.spec
    inline_key = cache_key(spec.name, spec.cache_version, spec.interface, {"text": text})
    queued = [e for e in events_of(await client.records(first.id)) if isinstance(e, NodeQueued)]
    assert [as_ref(e.inputs["text"]) is not None for e in queued] == [True]
    assert queued[0].cache_key == inline_key
    hits = [e for e in events_of(await client.records(second.id)) if isinstance(e, NodeCacheHit)]
    assert [e.cache_key for e in hits] == [inline_key]


async def test_a_reference_to_a_deleted_object_fails_its_node_with_a_system_error(client: AsyncClient) -> None:
    values = ValueStore.on_jetstream(client.js)
    encoded = await values.store(msgspec.to_builtins(b"d" * MB))
    ref = as_ref(encoded)
    assert ref is not None
    await values.delete(ref)
    with anyio.fail_after(60):
        handle = await client.launch(large_value_workflows.count_bytes, {"data": encoded})
        state = await final_state(client, handle)
    assert state.status == "failed" and state.failed_node == "counted_bytes"
    assert state.error is not None and state.error.kind == "system" and state.error.error_type == "ValueMissing"
    assert f"value {ref.hash}" in state.error.message and "is not in the values bucket PLAIT_VALUES" in (
        state.error.message
    )


async def test_a_file_and_a_directory_pass_between_tasks_and_a_file_reaches_the_client(
    client: AsyncClient, tmp_path: Path
) -> None:
    given = tmp_path / "given.bin"
    await anyio.Path(given).write_bytes(b"g" * 300_000)
    with anyio.fail_after(120):
        launched_with_file = await (
            await client.launch(large_value_workflows.size_of, {"file": File(str(given))})
        ).result()
        file_size = await (await client.launch(large_value_workflows.pass_file, {"size": 5 * MB})).result()
        made = await client.launch(large_value_workflows.made_file, {"size": 1000})
        returned = await made.result()
        listing = await (await client.launch(large_value_workflows.pass_tree, {"count": 3})).result()
    assert file_size == 5 * MB
    assert launched_with_file == 300_000, "the client stored the launch's file"
    assert isinstance(returned, File) and await anyio.Path(returned.path).read_bytes() == b"f" * 1000
    shutil.rmtree(Path(returned.path).parents[1])  # the client's download directory, now the caller's
    ref = as_ref(output_of(await client.records(made.id), "write_file"))
    assert ref is not None and ref.kind == "file" and ref.size == 1000
    assert listing == [f"part-{i}/data.txt=item {i}\n" for i in range(3)]


async def test_an_executions_file_output_is_saved_by_the_cli_and_read_by_the_client(
    client: AsyncClient, nats_url: str, tmp_path: Path
) -> None:
    with anyio.fail_after(120):
        made = await client.launch(large_value_workflows.made_file, {"size": 1000})
        await made.wait()
        env = {"PLAIT_NATS_URL": nats_url}
        listed = await plait_command_async(["executions", "outputs", made.id], env)
        saved = await plait_command_async(
            ["executions", "outputs", made.id, "--save", str(tmp_path / "out"), "--json"], env
        )
        missing = await plait_command_async(["executions", "outputs", "no-such-execution"], env)
        stored = await client.stored_outputs(made.id)
        read = await client.outputs(made.id, tmp_path / "read")
    ref = as_ref(stored["result"])
    assert ref is not None and (ref.kind, ref.size) == ("file", 1000)
    assert listed.returncode == 0 and listed.stdout.startswith('result = {"$plait":"ref"'), listed.stdout
    assert f"plait executions outputs {made.id} --save DIR" in listed.stderr
    assert saved.returncode == 0, saved.stderr
    path = Path(msgspec.json.decode(saved.stdout)["result"]["path"])
    assert path == tmp_path / "out" / ref.hash / str(ref.name) and await anyio.Path(path).read_bytes() == b"f" * 1000
    assert read["result"]["$plait"] == "file" and await anyio.Path(read["result"]["path"]).read_bytes() == b"f" * 1000
    assert missing.returncode == 2 and "execution no-such-execution does not exist" in missing.stderr


class CountingObjects:
    """``Objects`` that count the objects put through them."""

    def __init__(self, inner: Objects) -> None:
        self.inner, self.puts = inner, 0

    async def has(self, name: str) -> bool:
        return await self.inner.has(name)

    async def put(self, name: str, data: IO[bytes]) -> None:
        self.puts += 1
        await self.inner.put(name, data)

    async def get(self, name: str, into: IO[bytes]) -> bool:
        return await self.inner.get(name, into)

    async def delete(self, name: str) -> None:
        await self.inner.delete(name)


@pytest.fixture(params=["jetstream", "memory"])
async def objects(request: pytest.FixtureRequest) -> AsyncIterator[CountingObjects]:
    """The bucket on a real nats-server, and its in-memory twin: one contract."""
    if request.param == "memory":
        yield CountingObjects(InMemoryObjects())
        return
    nc = await nats.connect(request.getfixturevalue("nats_url"))
    try:
        yield CountingObjects(JetStreamObjects(nc.jetstream()))
    finally:
        await nc.close()


async def test_a_value_is_stored_once_by_its_hash_and_loads_back(objects: CountingObjects, tmp_path: Path) -> None:
    values = ValueStore(objects)
    text = "v" * 100_000
    ref = await values.store(text)
    assert as_ref(ref) == as_ref(await values.store(text)) and objects.puts == 1, "stored once"
    assert await values.load({"a": [ref]}, tmp_path) == {"a": [text]}


async def test_a_large_list_keeps_its_shape_with_its_largest_items_stored(
    objects: CountingObjects, tmp_path: Path
) -> None:
    """Three distinct 30 KB items make a 90 KB list: storing the largest brings it within 64 KiB, and a map over
    it still finds three items."""
    items = [c * (30_000 + i) for i, c in enumerate("abc")]
    stored = await ValueStore(objects).store(items)
    assert isinstance(stored, list) and [as_ref(item) is not None for item in stored] == [False, False, True]
    assert await ValueStore(objects).load(stored, tmp_path) == items
    many = await ValueStore(objects).store(list(range(20_000)))
    assert as_ref(many) is not None, "small items that cannot shrink it: the list is stored whole"


async def test_a_deleted_object_is_missing_when_loaded(objects: CountingObjects, tmp_path: Path) -> None:
    values = ValueStore(objects)
    ref = await values.store(b"x" * 100_000)
    stored = as_ref(ref)
    assert stored is not None
    await values.delete(stored)
    with pytest.raises(ValueMissing, match=f"value {stored.hash} .* is not in the values bucket PLAIT_VALUES"):
        await values.load(ref, tmp_path)


async def test_a_map_of_many_medium_outputs_gathers_references_and_succeeds(client: AsyncClient) -> None:
    """200 items each returning a distinct 60 KB string (under the inline limit) would gather 12 MB into the map
    node's outputs, too large for one decision: a map item's outputs over 1 KiB are stored, so the map node gathers
    references."""
    with anyio.fail_after(180):
        handle = await client.launch(
            large_value_workflows.many_medium_items, {"indexes": list(range(200)), "size": 60_000}
        )
        assert await handle.result() == 200 * 60_008
    gathered = output_of(await client.records(handle.id), "numbered_blob")
    assert len(gathered) == 200 and all(as_ref(item) is not None for item in gathered)


async def test_maps_run_over_lists_stored_whole_and_gather_a_large_output_by_reference(client: AsyncClient) -> None:
    """1,800 strings of 40 characters (76 KB, items too small to store apart) are stored whole at launch: the map
    runs each item from a reference to it; its gathered output (76 KB again) is stored by the scheduler, and the
    second map runs over that stored list the same way."""
    texts = [f"{i:04d}" + "t" * 36 for i in range(1_800)]
    with anyio.fail_after(180):
        handle = await client.launch(large_value_workflows.shouted_lengths, {"texts": texts})
        assert await handle.result() == 1_800 * 40
    records = await client.records(handle.id)
    events = list(events_of(records))
    launched = next(e for e in events if isinstance(e, ExecutionLaunched))
    assert stored_list_length(launched.inputs["texts"]) == 1_800
    queued = [e for e in events if isinstance(e, NodeQueued) and e.node in ("shout", "length")]
    assert len(queued) == 3_600 and all(as_ref(e.inputs["text"]).kind == "item" for e in queued)  # type: ignore[union-attr]
    shouted = output_of(records, "shout")
    assert stored_list_length(shouted) == 1_800
    ref = as_ref(shouted)
    assert ref is not None
    assert await client._values.load(shouted, Path("/nonexistent")) == [text.upper() for text in texts]
    assert max(len(record.data) for record in records) < MB
    assert replay(records).outputs == {"result": 1_800 * 40}


async def test_a_reference_naming_a_path_outside_the_download_directory_is_refused(tmp_path: Path) -> None:
    """A reference comes from the log, which any sender may write to: its hash and name are one path component."""
    values = ValueStore(InMemoryObjects())
    for hash_, name in (("../../escape", "f"), ("abc", "../escape"), ("abc", "..")):
        ref = {"$plait": "ref", "hash": hash_, "size": 1, "kind": "file", "name": name}
        with pytest.raises(ValueMissing, match="is not a file name"):
            await values.load(ref, tmp_path / "work")
    assert not (tmp_path / "escape").exists()
