"""``plait deadletter``: operators see how many commands were rejected and why, and send them again."""

from __future__ import annotations

import dataclasses
import json
import os
import sys

import anyio
from nats.js import JetStreamContext

from plait.adapters.commands import publish_command
from plait.adapters.streams import (
    DEAD_LETTER_MAX_AGE_SECONDS,
    DEAD_LETTER_MAX_BYTES,
    DEAD_LETTER_MAX_MESSAGE_BYTES,
    ensure_streams,
)
from plait.client import AsyncClient
from plait.protocol import subjects
from plait_executor import ExecutorService
from plait_scheduler import SchedulerService
from tests import workflows
from tests.helpers.launching import resolved_launch
from tests.helpers.running import running
from tests.helpers.states import final_state

DEADLINE = 30.0


async def plait_cli(nats_url: str, *argv: str) -> str:
    """``plait ARGV`` as a subprocess against ``nats_url``: its output; it must exit 0."""
    env = {**os.environ, "PLAIT_NATS_URL": nats_url}
    result = await anyio.run_process([sys.executable, "-m", "plait_cli.main", *argv], env=env, check=False)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


async def _dead_letters(js: JetStreamContext, count: int) -> None:
    """Return once the dead-letter stream holds ``count`` messages (each rejection is one publish)."""
    subscription = await js.subscribe(f"{subjects.DEAD_LETTER_ROOT}.>", stream=subjects.DEAD_LETTER_STREAM)
    try:
        with anyio.fail_after(DEADLINE):
            for _ in range(count):
                await subscription.next_msg(timeout=DEADLINE)
    finally:
        await subscription.unsubscribe()


async def test_a_dead_letter_is_counted_shown_and_redriven_once_its_cause_is_gone(
    nats_url: str, js: JetStreamContext
) -> None:
    launch = resolved_launch(
        workflows.add_two.spec,
        {"a": 20, "b": 22},
        "too-early",
        "launch:too-early",
        project="default",
        domain="development",
    ).command
    scheduler = SchedulerService(nats_url, replica="test-scheduler")
    executor = ExecutorService(nats_url, concurrency=1, replica="test-executor")
    async with running(scheduler.run, executor.run), await AsyncClient.connect(nats_url) as client:
        await publish_command(js, launch, "default", "development")  # its workflow is not registered yet
        await _dead_letters(js, 1)  # commands of different executions are handled concurrently: order them
        await js.publish(f"{subjects.COMMANDS_ROOT}.default.development.junk.launch", b"{not json")
        await _dead_letters(js, 2)

        assert json.loads(await plait_cli(nats_url, "deadletter", "count", "--json")) == {"count": 2}
        assert (await plait_cli(nats_url, "deadletter", "count")).strip() == "2"
        listed = json.loads(await plait_cli(nats_url, "deadletter", "list", "--json"))
        assert listed["count"] == 2
        early, junk = listed["dead_letters"]
        assert early["subject"] == subjects.command_subject("default", "development", "too-early", "launch")
        assert "is not registered" in early["reason"]
        assert junk["reason"].startswith("malformed command")
        shown = json.loads(await plait_cli(nats_url, "deadletter", "show", str(early["sequence"]), "--json"))
        assert json.loads(shown["command"])["execution_id"] == "too-early"
        assert "dead letters: 2" in await plait_cli(nats_url, "deadletter", "list")
        newest = json.loads(await plait_cli(nats_url, "deadletter", "list", "--limit", "1", "--json"))
        assert (newest["count"], newest["dead_letters"]) == (2, [junk])

        await client.register(workflows.add_two)
        redriven = await plait_cli(nats_url, "deadletter", "redrive", str(early["sequence"]))
        assert f"redrove {early['sequence']} to {early['subject']}" in redriven
        state = await final_state(client, "too-early", timeout=DEADLINE)
        assert (state.status, state.outputs) == ("succeeded", {"result": 42})
        assert json.loads(await plait_cli(nats_url, "deadletter", "count", "--json")) == {"count": 1}

        await plait_cli(nats_url, "deadletter", "redrive", "--all")
        await _dead_letters(js, 1)  # still malformed: back as a new dead letter
        [again] = json.loads(await plait_cli(nats_url, "deadletter", "list", "--json"))["dead_letters"]
        assert again["sequence"] > junk["sequence"] and again["reason"].startswith("malformed command")


async def test_the_dead_letter_stream_has_stated_limits(js: JetStreamContext) -> None:
    config = (await js.stream_info(subjects.DEAD_LETTER_STREAM)).config
    assert (config.max_bytes, config.max_msg_size, config.max_age, config.discard) == (
        DEAD_LETTER_MAX_BYTES,
        DEAD_LETTER_MAX_MESSAGE_BYTES,
        DEAD_LETTER_MAX_AGE_SECONDS,
        "old",
    )


async def test_an_unbounded_dead_letter_stream_of_an_older_release_is_given_the_limits(js: JetStreamContext) -> None:
    config = (await js.stream_info(subjects.DEAD_LETTER_STREAM)).config
    await js.update_stream(dataclasses.replace(config, max_bytes=-1, max_msg_size=-1))
    await ensure_streams(js)
    config = (await js.stream_info(subjects.DEAD_LETTER_STREAM)).config
    assert (config.max_bytes, config.max_msg_size) == (DEAD_LETTER_MAX_BYTES, DEAD_LETTER_MAX_MESSAGE_BYTES)
