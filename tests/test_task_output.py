"""What a task writes (stdout, stderr, logging, its subprocesses' output) is captured per attempt, bounded, stored in
the logs bucket with a reference in the event ending the attempt, and shown by ``plait logs``, ``client.logs`` and
under a failure in ``plait run``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from plait import codec
from plait.adapters.buckets import delete_object
from plait.core.events import AttemptFailed, AttemptStarted, Event, NodeSucceeded
from plait.core.task_output import DEFAULT_OUTPUT_HEAD_BYTES, DEFAULT_OUTPUT_TAIL_BYTES
from plait.errors import NotFound
from plait.protocol import subjects
from plait.replay import Record
from plait_cli.logs import until_ended
from tests import output_workflows
from tests.helpers.plait_command import plait_command_async
from tests.helpers.reading import first_event
from tests.helpers.stack import services_and_client
from tests.helpers.states import final_state

DEADLINE = 60.0


def events_of(records: list[Record]) -> Iterator[Event]:
    for record in records:
        yield from codec.decision_decoder.decode(record.data).events


async def test_stdout_stderr_logging_and_a_subprocess_are_captured_and_read_back(
    tmp_path: Path, nats_url: str, database_url: str
) -> None:
    env = {"PLAIT_NATS_URL": nats_url, "PLAIT_HOME": str(tmp_path / "home")}
    async with services_and_client(nats_url, database_url) as client:
        handle = await client.launch(output_workflows.chatty_flow, {"tag": "one"})
        state = await final_state(client, handle.id, timeout=DEADLINE)
        text = await client.logs(handle.id)
        records = await client.records(handle.id)
        shown = await plait_command_async(["logs", handle.id, "chatty"], env)
        first = await plait_command_async(["logs", handle.id, "--attempt", "1", "--follow"], env)
        missing = await plait_command_async(["logs", handle.id, "no_such_node"], env)
    assert state.status == "succeeded"
    lines = text.splitlines()
    assert lines[0] == "== chatty (attempt 1) =="
    for expected in ("stdout one", "stderr one", "subprocess one", "fd one"):
        assert expected in lines, (expected, text)
    assert any(line.endswith("INFO chatty: logged one") for line in lines), text
    assert lines.index("stdout one") < lines.index("subprocess one") < lines.index("fd one")  # one stream's order
    [succeeded] = [
        e for r in records for e in codec.decision_decoder.decode(r.data).events if isinstance(e, NodeSucceeded)
    ]
    assert (
        succeeded.output is not None and succeeded.output.size == succeeded.output.kept == len(text) - len(lines[0]) - 1
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == text
    assert first.returncode == 0, first.stderr
    assert first.stdout == text
    assert missing.returncode == 2
    assert f"execution {handle.id} has no attempt of node 'no_such_node'" in missing.stderr


async def test_a_task_printing_5_mb_keeps_its_head_and_tail_with_a_marker(nats_url: str, database_url: str) -> None:
    async with services_and_client(nats_url, database_url) as client:
        handle = await client.launch(output_workflows.loud_flow, {"megabytes": 5})
        state = await final_state(client, handle.id, timeout=DEADLINE)
        text = await client.logs(handle.id, "loud")
        records = await client.records(handle.id)
    assert state.status == "succeeded"
    body = text.split("\n", 1)[1]
    assert body.startswith("FIRST LINE\n") and body.endswith("LAST LINE\n")
    written = len("FIRST LINE\n") + 5 * 10_000 * len(output_workflows.LINE) + len("LAST LINE\n")
    cut = written - DEFAULT_OUTPUT_HEAD_BYTES - DEFAULT_OUTPUT_TAIL_BYTES
    assert f"[plait: {cut:,} bytes cut here; kept the first 65,536 and the last 262,144]" in body
    assert len(body) < DEFAULT_OUTPUT_HEAD_BYTES + DEFAULT_OUTPUT_TAIL_BYTES + 200
    [succeeded] = [
        e for r in records for e in codec.decision_decoder.decode(r.data).events if isinstance(e, NodeSucceeded)
    ]
    assert succeeded.output is not None and succeeded.output.size == written
    assert succeeded.output.kept == len(body)


async def test_a_failed_attempts_tail_shows_under_the_failure_in_plait_run(
    tmp_path: Path, nats_url: str, database_url: str
) -> None:
    env = {"PLAIT_NATS_URL": nats_url, "PLAIT_HOME": str(tmp_path / "home")}
    async with services_and_client(nats_url, database_url) as client:
        ran = await plait_command_async(["run", "tests/output_workflows.py:breaks_flow", "--steps", "30"], env)
        [execution_id] = await client.execution_ids()
        records = await client.records(execution_id)
        audited = await plait_command_async(["audit", "verify", execution_id], env)  # the catalog holds the tail too
    assert ran.returncode == 1, ran.stderr
    assert "ValueError: broke after the steps" in ran.stderr
    assert f"last output of the attempt (plait logs {execution_id} breaks)" in ran.stderr
    shown = ran.stderr.splitlines()
    assert "step 29 done" in shown and "step 10 done" in shown
    assert "step 9 done" not in shown  # only the last 20 lines travel in the error
    failed = [e for e in events_of(records) if isinstance(e, AttemptFailed)]
    assert failed and all(e.output is not None and e.error.output_tail.endswith("step 29 done") for e in failed)
    assert audited.returncode == 0, audited.stdout + audited.stderr


async def test_two_attempts_in_the_same_warm_worker_do_not_mix(nats_url: str, database_url: str) -> None:
    async with services_and_client(nats_url, database_url, concurrency=1) as client:
        one = await client.launch(output_workflows.chatty_flow, {"tag": "one"})
        first_pid = (await final_state(client, one.id, timeout=DEADLINE)).outputs
        two = await client.launch(output_workflows.chatty_flow, {"tag": "two"})
        second_pid = (await final_state(client, two.id, timeout=DEADLINE)).outputs
        first, second = await client.logs(one.id), await client.logs(two.id)
        quiet = await client.launch(output_workflows.quiet_flow, {"x": 1})
        await final_state(client, quiet.id, timeout=DEADLINE)
        nothing = await client.logs(quiet.id)
        with pytest.raises(NotFound):
            await client.logs(one.id, attempt=2)
    assert first_pid == second_pid, "both ran in the one worker process"
    assert "stdout one" in first and "two" not in first
    assert "stdout two" in second and "one" not in second.replace("(attempt 1)", "")
    assert nothing == "== quiet (attempt 1) ==\n(no output)\n"


async def test_each_map_item_shows_its_own_output_and_a_deleted_one_is_said_missing(
    nats_url: str, database_url: str
) -> None:
    async with services_and_client(nats_url, database_url) as client:
        handle = await client.launch(output_workflows.say_each, {"xs": [1, 2, 3]})
        state = await final_state(client, handle.id, timeout=DEADLINE)
        text = await client.logs(handle.id)
        [deleted] = [one for one in await client.attempt_outputs(handle.id) if one.attempt_id.endswith("[1]/1")]
        assert deleted.output is not None
        await delete_object(client.js, subjects.LOGS_BUCKET, deleted.output.name)
        after = await client.logs(handle.id)
    assert state.status == "succeeded"
    blocks = text.split("== ")[1:]
    assert blocks == [f"say[{index}] (attempt 1) ==\nitem {index + 1}\n" for index in range(3)]
    assert f"(its output, {deleted.output.name}, is no longer in the logs bucket)" in after
    assert "item 2" not in after and "item 1" in after and "item 3" in after


async def test_output_that_cannot_be_stored_is_dropped_and_the_result_still_reported(
    nats_url: str, database_url: str
) -> None:
    async with services_and_client(nats_url, database_url, concurrency=1) as client:
        first = await client.launch(output_workflows.chatty_flow, {"tag": "one"})
        await final_state(client, first.id, timeout=DEADLINE)  # the executor has the bucket in hand
        await client.js.delete_object_store(subjects.LOGS_BUCKET)
        failing = await client.launch(output_workflows.breaks_flow, {"steps": 2})
        state = await final_state(client, failing.id, timeout=DEADLINE)
        records = await client.records(failing.id)
    assert state.status == "failed" and state.error is not None
    assert state.error.output_tail == "step 0 done\nstep 1 done"  # the tail travels in the error all the same
    [failed] = [e for e in events_of(records) if isinstance(e, AttemptFailed)]
    assert failed.output is None


async def test_follow_waits_for_a_running_attempt_to_end(tmp_path: Path, nats_url: str, database_url: str) -> None:
    flag = tmp_path / "flag"
    async with services_and_client(nats_url, database_url) as client:
        handle = await client.launch(output_workflows.waits_for_flow, {"path": str(flag)})
        await first_event(client, handle.id, AttemptStarted)
        assert "(still running: its output is stored when it ends" in await client.logs(handle.id)
        followed = anyio.Event()

        async def follow() -> None:
            await until_ended(client, handle.id, "waits_for", None)
            followed.set()

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(follow)
            await first_event(client, handle.id, AttemptStarted)  # the follower has had its turns meanwhile
            assert not followed.is_set()
            flag.touch()
            await followed.wait()
        text = await client.logs(handle.id, "waits_for")
    assert text == "== waits_for (attempt 1) ==\nwaiting\nreleased\n"
