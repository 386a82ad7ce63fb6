"""The checkpoint of an execution's end is side work of the decision that ended it: a publish that fails is done
again until stored, and a replica that dies before storing it leaves it to another replica's outbox."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import msgspec
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from plait import codec
from plait.adapters.checkpoints import read_checkpoints
from plait.adapters.streams import ensure_streams
from plait.audit_signatures import verify_checkpoints
from plait.client import AsyncClient
from plait.protocol import signing, subjects
from plait.protocol.signing import SignedCheckpoint
from plait_executor import ExecutorService
from plait_scheduler import SchedulerService
from tests import workflows
from tests.faults.harness import ACK_WAIT, service_env, start_service
from tests.helpers.outbox_replay import outbox_caught_up
from tests.helpers.running import running
from tests.helpers.states import final_state

DEADLINE = 60.0


@pytest.fixture
def signer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[signing.Signer]:
    """This process's schedulers sign with a new key (and so do the ones it starts, through the environment)."""
    key = signing.Signer.generate()
    key_file = tmp_path / "signing.pem"
    key_file.write_bytes(key.private_pem())
    monkeypatch.setenv(signing.SIGNING_KEY_FILE, str(key_file))
    signing.process_signer.cache_clear()
    try:
        yield key
    finally:
        signing.process_signer.cache_clear()


@pytest.fixture
async def client(nats_url: str) -> AsyncIterator[AsyncClient]:
    async with await AsyncClient.connect(nats_url) as plait_client:
        yield plait_client


async def first_publish(nc: NATS, subject: str) -> Msg:
    """The next message published to ``subject``, stored or not (a subscriber of the subject answers no publish: the
    publisher, awaiting JetStream's answer, times out)."""
    attempts = await nc.subscribe(subject)
    try:
        return await attempts.next_msg(timeout=DEADLINE)
    finally:
        await attempts.unsubscribe()


async def first_stored(client: AsyncClient) -> SignedCheckpoint:
    """The first checkpoint the checkpoints stream stores (once it exists)."""
    stored = await client.js.subscribe(f"{subjects.CHECKPOINT_ROOT}.>", ordered_consumer=True)
    try:
        return msgspec.json.decode((await stored.next_msg(timeout=DEADLINE)).data, type=SignedCheckpoint)
    finally:
        await stored.unsubscribe()


async def checkpoints_stream_exists(client: AsyncClient) -> bool:
    return subjects.CHECKPOINTS_STREAM in {info.config.name for info in await client.js.streams_info()}


async def test_a_checkpoint_not_stored_at_first_is_published_again_until_it_is(
    nats_url: str, signer: signing.Signer, client: AsyncClient
) -> None:
    scheduler = SchedulerService(nats_url, replica="first", ack_wait_seconds=float(ACK_WAIT))
    executor = ExecutorService(nats_url, concurrency=1, replica="executor")
    async with running(scheduler.run, executor.run):
        await client.js.delete_stream(subjects.CHECKPOINTS_STREAM)  # in production: a leader change, an outage
        handle = await client.launch(workflows.add_two, {"a": 1, "b": 2})
        tried = await first_publish(client.nc, f"{subjects.CHECKPOINT_ROOT}.>")
        assert not await checkpoints_stream_exists(client), "so the publish was not stored"
        await ensure_streams(client.js)
        stored = await first_stored(client)
        state = await final_state(client, handle.id, timeout=DEADLINE)
        await outbox_caught_up(client.js)
    records = await client.records(handle.id)
    assert state.status == "succeeded"
    assert stored == msgspec.json.decode(tried.data, type=SignedCheckpoint), "the same checkpoint, published again"
    assert await read_checkpoints(client.js, client.project, client.domain, handle.id) == [stored], "stored once"
    assert (stored.checkpoint.count, stored.checkpoint.sequence) == (len(records), records[-1].sequence)
    assert verify_checkpoints(records, [stored], signing.TrustStore([signer.public])) == []


async def test_a_replica_killed_before_storing_the_checkpoint_leaves_it_to_another(
    nats_url: str, signer: signing.Signer, client: AsyncClient
) -> None:
    deciding = start_service("scheduler", service_env(nats_url, PLAIT_REPLICA="deciding"))
    try:
        executor = ExecutorService(nats_url, concurrency=1, replica="executor")
        async with running(executor.run):
            await client.js.delete_stream(subjects.CHECKPOINTS_STREAM)
            handle = await client.launch(workflows.add_two, {"a": 1, "b": 2})
            tried = await first_publish(client.nc, f"{subjects.CHECKPOINT_ROOT}.>")  # the decision is stored
            deciding.kill()  # SIGKILL, its checkpoint not stored
            assert not await checkpoints_stream_exists(client)
            state = await final_state(client, handle.id, timeout=DEADLINE)
            await ensure_streams(client.js)
            other = SchedulerService(nats_url, replica="other", ack_wait_seconds=float(ACK_WAIT))
            async with running(other.run):
                stored = await first_stored(client)
    finally:
        deciding.stop()
    records = await client.records(handle.id)
    assert state.status == "succeeded"
    assert codec.decision_decoder.decode(records[-1].data).replica == "deciding", "the killed replica ended it"
    assert stored == msgspec.json.decode(tried.data, type=SignedCheckpoint)
    assert (stored.checkpoint.count, stored.checkpoint.sequence) == (len(records), records[-1].sequence)
    assert verify_checkpoints(records, [stored], signing.TrustStore([signer.public])) == []
