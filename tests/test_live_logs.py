"""``plait logs --follow`` and ``client.follow_logs``: what a running attempt writes is shown while it runs, from its
first line, and following ends once the execution has. Against a real nats-server and PostgreSQL."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

import anyio
import anyio.abc
import anyio.to_thread
import pytest

from plait import Client
from plait.adapters.connection import connect
from plait.adapters.streams import ensure_streams
from plait.client.live_logs import OutputChunk
from plait.core.events import AttemptStarted
from plait.sdk.hints import encode_value
from plait_cli.logs import attempts_as_json
from plait_executor.live_output import LiveOutput
from tests import output_workflows
from tests.helpers.dispatches import first_attempt
from tests.helpers.plait_command import PLAIT, plait_command_async
from tests.helpers.processes import REPO
from tests.helpers.reading import first_event
from tests.helpers.stack import services_and_client
from tests.helpers.states import final_state

DEADLINE = 60.0


async def test_the_client_gets_a_running_attempts_output_before_it_ends(
    tmp_path: Path, nats_url: str, database_url: str
) -> None:
    flag = tmp_path / "flag"
    async with services_and_client(nats_url, database_url) as client:
        handle = await client.launch(output_workflows.waits_for_flow, {"path": str(flag)})
        chunks = []
        with anyio.fail_after(DEADLINE):
            async for chunk in client.follow_logs(handle.id):
                chunks.append(chunk)
                if "waiting" in chunk.text:
                    assert not flag.exists()
                    flag.touch()  # the task prints "released" and ends only now: "waiting" was shown live
        state = await final_state(client, handle.id, timeout=DEADLINE)
    assert state.status == "succeeded"
    assert "".join(chunk.text for chunk in chunks) == "waiting\nreleased\n"
    assert {(chunk.label, chunk.attempt, chunk.live) for chunk in chunks} == {("waits_for", 1, True)}
    assert chunks[-1].ended and not any(chunk.ended for chunk in chunks[:-1])


def follow_with_the_blocking_client(nats_url: str, execution_id: str) -> list[OutputChunk]:
    with Client(nats_url) as client:
        return list(client.follow_logs(execution_id))


async def test_following_an_ended_execution_prints_what_was_stored_and_returns(
    tmp_path: Path, nats_url: str, database_url: str
) -> None:
    env = {"PLAIT_NATS_URL": nats_url, "PLAIT_HOME": str(tmp_path / "home")}
    async with services_and_client(nats_url, database_url) as client:
        handle = await client.launch(output_workflows.say_each, {"xs": [1, 2]})
        await final_state(client, handle.id, timeout=DEADLINE)
        chunks = [chunk async for chunk in client.follow_logs(handle.id)]
        shown = await plait_command_async(["logs", handle.id, "--follow"], env)
        blocking = await anyio.to_thread.run_sync(follow_with_the_blocking_client, nats_url, handle.id)
    assert sorted((chunk.label, chunk.text, chunk.live) for chunk in chunks) == [
        ("say[0]", "item 1\n", False),
        ("say[1]", "item 2\n", False),
    ]
    assert sorted(chunks, key=lambda chunk: chunk.label) == sorted(blocking, key=lambda chunk: chunk.label)
    assert shown.returncode == 0, shown.stderr
    assert sorted(shown.stdout.split("== ")[1:]) == [
        "say[0] (attempt 1) ==\nitem 1\n",
        "say[1] (attempt 1) ==\nitem 2\n",
    ]


async def test_plait_logs_follow_prints_lines_as_the_task_writes_them(
    tmp_path: Path, nats_url: str, database_url: str
) -> None:
    flag = tmp_path / "flag"
    env = {**os.environ, "PLAIT_NATS_URL": nats_url, "PLAIT_HOME": str(tmp_path / "home")}
    async with services_and_client(nats_url, database_url) as client:
        handle = await client.launch(output_workflows.waits_for_flow, {"path": str(flag)})
        await first_event(client, handle.id, AttemptStarted)
        async with await anyio.open_process(
            [*PLAIT, "logs", handle.id, "--follow"], cwd=REPO, env=env, stderr=subprocess.PIPE
        ) as follower:
            assert follower.stdout is not None
            received = b""
            with anyio.fail_after(DEADLINE):
                async for data in follower.stdout:
                    received += data
                    if b"waiting\n" in received and not flag.exists():
                        assert b"released" not in received
                        flag.touch()
            code = await follower.wait()
            assert follower.stderr is not None
            errors = (await follower.stderr.receive()).decode() if code else ""
        state = await final_state(client, handle.id, timeout=DEADLINE)
    assert state.status == "succeeded"
    assert code == 0, errors
    assert received.decode() == "waits_for | waiting\nwaits_for | released\n"


async def test_an_attempt_that_wrote_nothing_while_followed_shows_as_an_empty_live_end(
    tmp_path: Path, nats_url: str, database_url: str
) -> None:
    flag = tmp_path / "flag"
    async with services_and_client(nats_url, database_url) as client:
        handle = await client.launch(output_workflows.waits_then_silent, {"path": str(flag)})
        chunks = []
        with anyio.fail_after(DEADLINE):
            async for chunk in client.follow_logs(handle.id):
                chunks.append(chunk)
                if "waiting" in chunk.text:
                    flag.touch()  # silent_after runs only now, while followed
        state = await final_state(client, handle.id, timeout=DEADLINE)
    assert state.status == "succeeded"
    silent = [chunk for chunk in chunks if chunk.label == "silent_after"]
    # Its executor published nothing live for it; the follower still ends it as a live attempt with no text, which
    # `plait logs --follow` prints as nothing (not a stored "(no output)" block).
    assert [(chunk.text, chunk.ended, chunk.live) for chunk in silent] == [("", True, True)]
    assert "".join(chunk.text for chunk in chunks if chunk.label == "waits_for") == "waiting\nreleased\n"


class AttemptRefused(Exception):
    pass


async def test_an_attempts_own_error_leaves_a_lone_tail_as_it_came(nats_url: str, tmp_path: Path) -> None:
    """Without the executor's ticker (as in a pod, or while the executor stops), each attempt tails its file on a task
    of its own; what the attempt raises comes out as raised (the runner tells a hand-back by its type), not wrapped
    in an exception group."""
    nc = await connect(nats_url, "test-live-output")
    try:
        await ensure_streams(nc.jetstream())
        live = LiveOutput(nc.jetstream(), tmp_path)
        with pytest.raises(AttemptRefused):
            async with live.tailing(first_attempt(output_workflows.chatty.spec, {"tag": encode_value("t")})):
                raise AttemptRefused
    finally:
        await nc.close()


async def test_logs_show_a_running_attempts_output_so_far_and_a_stopped_ones_from_its_live_view(
    tmp_path: Path, nats_url: str, database_url: str
) -> None:
    flag = tmp_path / "never"  # the task waits for it: it runs until its execution is aborted
    async with services_and_client(nats_url, database_url) as client:
        handle = await client.launch(output_workflows.waits_for_flow, {"path": str(flag)})
        with anyio.fail_after(DEADLINE):
            async with contextlib.aclosing(client.follow_logs(handle.id)) as chunks:
                async for chunk in chunks:
                    if "waiting" in chunk.text:
                        break
            running = await client.logs(handle.id)
            await client.abort(handle.id, "enough")
            state = await final_state(client, handle.id, timeout=DEADLINE)
            stopped = await client.logs(handle.id)
            [shown] = await attempts_as_json(client, handle.id, None, None)
    assert state.status == "aborted"
    assert (
        running == "== waits_for (attempt 1) ==\n(still running: its output is stored when it ends; so far:)\nwaiting\n"
    )
    assert stopped == (
        "== waits_for (attempt 1) ==\n(stopped when its execution ended: its output was not stored; its live view "
        "kept:)\nwaiting\n"
    )
    assert (shown["ended"], shown["stopped"], shown["output"], shown["live_output"]) == (False, True, None, "waiting\n")


def first_chunk_with_the_blocking_client(nats_url: str, execution_id: str) -> OutputChunk:
    with Client(nats_url) as client:
        for chunk in client.follow_logs(execution_id):
            return chunk  # leaves the follow early: it is closed, not left running
    raise AssertionError("the execution wrote nothing")


async def test_a_follow_left_early_ends_cleanly(tmp_path: Path, nats_url: str, database_url: str) -> None:
    flag = tmp_path / "flag"
    async with services_and_client(nats_url, database_url) as client:
        handle = await client.launch(output_workflows.waits_for_flow, {"path": str(flag)})
        with anyio.fail_after(DEADLINE):
            first = await anyio.to_thread.run_sync(first_chunk_with_the_blocking_client, nats_url, handle.id)
            flag.touch()
            state = await final_state(client, handle.id, timeout=DEADLINE)
    assert first.text == "waiting\n" and first.live
    assert state.status == "succeeded"
