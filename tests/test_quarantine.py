"""Messages of the event log that a service cannot read are quarantined; the services go on past them.

``PLAIT_EVENTS`` denies deletes, so an unreadable message stays there for ever: the catalog and the schedulers'
outbox must not stop on it, on this start or the next.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import msgspec
import pytest
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from plait import codec
from plait.adapters.connection import connect
from plait.adapters.streams import ensure_streams
from plait.client import AsyncClient
from plait.protocol import subjects
from plait.protocol.quarantine import CATALOG_READER, OUTBOX_READER, QuarantineEntry
from plait_catalog import CatalogService
from plait_executor import ExecutorService
from plait_scheduler import SchedulerService
from tests import workflows
from tests.helpers.catalog_reads import projected
from tests.helpers.launching import launch_decision
from tests.helpers.running import running
from tests.helpers.states import final_state

PROJECT, DOMAIN = "default", "development"
DEADLINE = 30.0


def _decision(execution_id: str) -> bytes:
    return launch_decision(workflows.add_two.spec, {"a": 1, "b": 2}, execution_id)


GARBAGE = {
    subjects.execution_subject(PROJECT, DOMAIN, "junk-json"): b"{not json",
    subjects.execution_subject(PROJECT, DOMAIN, "junk-shape"): b'{"execution_id": 7, "events": "none"}',
    subjects.execution_subject(PROJECT, DOMAIN, "junk-truncated"): _decision("junk-truncated")[:-40],
    subjects.registration_subject(PROJECT, DOMAIN, "task", "junk", "v1"): b'{"type": "task_registered", "spec": 5}',
    subjects.cache_entry_subject(PROJECT, DOMAIN, "junk-key"): b'{"type": "cache_filled.v1", "outputs": []}',
}
DECISIONS = [subject for subject in GARBAGE if subject.startswith(subjects.EVENTS_ROOT)]


class QuarantineWatch:
    """The quarantine records published, as they are published (a plain subscription on their subjects)."""

    def __init__(self) -> None:
        self.entries: list[QuarantineEntry] = []
        self._changed = anyio.Event()

    async def start(self, nc: NATS) -> None:
        await nc.subscribe(f"{subjects.QUARANTINE_ROOT}.>", cb=self._received)
        await nc.flush()

    async def _received(self, msg: Msg) -> None:
        self.entries.append(msgspec.json.decode(msg.data, type=QuarantineEntry))
        self._changed.set()
        self._changed = anyio.Event()

    def of(self, reader: str) -> dict[str, QuarantineEntry]:
        return {entry.subject: entry for entry in self.entries if entry.reader == reader}

    async def wait_until(self, done: Callable[[], bool]) -> None:
        with anyio.fail_after(DEADLINE):
            while not done():
                await self._changed.wait()


async def plait_cli(nats_url: str, *argv: str) -> tuple[int, str]:
    """``plait ARGV`` as a subprocess against ``nats_url``: its exit code, and its output and errors."""
    env = {**os.environ, "PLAIT_NATS_URL": nats_url}
    result = await anyio.run_process([sys.executable, "-m", "plait_cli.main", *argv], env=env, check=False)
    return result.returncode, result.stdout.decode() + result.stderr.decode()


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[NATS]:
    """A connection to the test's NATS server, with plait's streams."""
    connection = await connect(nats_url, "test-quarantine")
    try:
        await ensure_streams(connection.jetstream())
        yield connection
    finally:
        await connection.close()


@pytest.fixture
async def watch(nc: NATS) -> QuarantineWatch:
    seen = QuarantineWatch()
    await seen.start(nc)
    return seen


async def test_unreadable_messages_are_quarantined_and_the_services_go_on(
    nats_url: str, database_url: str, nc: NATS, watch: QuarantineWatch
) -> None:
    js = nc.jetstream()
    for subject, data in GARBAGE.items():
        await js.publish(subject, data, stream=subjects.EVENTS_STREAM)
    scheduler = SchedulerService(nats_url, replica="test-scheduler")
    executor = ExecutorService(nats_url, concurrency=1, replica="test-executor")
    catalog = CatalogService(nats_url, database_url, replica="test-catalog")
    async with running(scheduler.run, executor.run), await AsyncClient.connect(nats_url) as client:
        async with running(catalog.run):
            execution_id = (await client.launch(workflows.add_two, {"a": 2, "b": 40})).id
            state = await final_state(client, execution_id, timeout=DEADLINE)
            assert (state.status, state.outputs) == ("succeeded", {"result": 42})
            assert (await projected(client, execution_id)).status == "succeeded"
            await watch.wait_until(
                lambda: len(watch.of(CATALOG_READER)) == len(GARBAGE) and len(watch.of(OUTBOX_READER)) == 3
            )
        assert set(watch.of(CATALOG_READER)) == set(GARBAGE)
        assert set(watch.of(OUTBOX_READER)) == set(DECISIONS)
        assert "cannot be decoded" in watch.of(CATALOG_READER)[DECISIONS[0]].reason

        code, listed = await plait_cli(nats_url, "quarantine", "list", "--json")
        assert code == 0, listed
        shown = json.loads(listed)
        assert shown["open"] == len(GARBAGE) + len(DECISIONS)
        assert {(e["reader"], e["subject"]) for e in shown["entries"]} == {
            *((CATALOG_READER, s) for s in GARBAGE),
            *((OUTBOX_READER, s) for s in DECISIONS),
        }
        code, counted = await plait_cli(nats_url, "quarantine", "count")
        assert code == 0 and counted.strip() == str(len(GARBAGE) + len(DECISIONS))

        restarted = CatalogService(nats_url, database_url, replica="test-catalog-again")
        with structlog.testing.capture_logs() as logs:
            async with running(restarted.run):
                later = await final_state(client, await client.launch(workflows.add_two, {"a": 1, "b": 1}), DEADLINE)
                assert (await projected(client, later.execution_id)).status == "succeeded"
        assert not [log for log in logs if log["event"] == "message_quarantined"], "met again after a restart"


def _from_the_future(execution_id: str) -> bytes:
    """A launch decision written by a later release: its launch event has a tag this release does not know."""
    return _decision(execution_id).replace(b'"execution_launched.v1"', b'"execution_launched.v9"')


async def test_a_replay_after_an_upgrade_takes_the_quarantined_decision_and_its_execution_completes(
    nats_url: str, database_url: str, nc: NATS, watch: QuarantineWatch, monkeypatch: pytest.MonkeyPatch
) -> None:
    js = nc.jetstream()
    subject = subjects.execution_subject(PROJECT, DOMAIN, "future")
    await js.publish(subject, _from_the_future("future"), stream=subjects.EVENTS_STREAM)
    scheduler = SchedulerService(nats_url, replica="test-scheduler")
    executor = ExecutorService(nats_url, concurrency=1, replica="test-executor")
    catalog = CatalogService(nats_url, database_url, replica="test-catalog")
    async with running(scheduler.run, executor.run, catalog.run), await AsyncClient.connect(nats_url) as client:
        await client.register(workflows.add_two)  # executors run only registered code
        await watch.wait_until(lambda: subject in watch.of(CATALOG_READER) and subject in watch.of(OUTBOX_READER))
        code, output = await plait_cli(nats_url, "quarantine", "replay")
        assert code == 1, output
        assert "catalog: 0 resolved, 1 still unreadable" in output
        assert "outbox: 0 resolved, 1 still unreadable" in output

        def upgraded(raw: dict[str, Any]) -> dict[str, Any]:
            return {**raw, "type": "execution_launched.v1"}

        monkeypatch.setattr(codec.decision_decoder, "upcasters", {"execution_launched.v9": upgraded})
        code, output = await plait_cli(nats_url, "quarantine", "replay")
        assert code == 0, output
        assert "catalog: 1 resolved, 0 still unreadable" in output
        assert "outbox: 1 resolved, 0 still unreadable" in output
        state = await final_state(client, "future", timeout=DEADLINE)  # its first attempt was dispatched at last
        assert (state.status, state.outputs) == ("succeeded", {"result": 3})
        assert (await projected(client, "future")).outputs == {"result": 3}
        code, listed = await plait_cli(nats_url, "quarantine", "list", "--all", "--json")
        assert code == 0, listed
        assert json.loads(listed)["open"] == 0
        assert all(entry["resolved_at"] is not None for entry in json.loads(listed)["entries"])
