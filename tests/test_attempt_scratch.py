"""A local worker's tasks make their temporary files (``tempfile``, and their subprocesses' ``TMPDIR``) in the worker's
own folder; what an attempt left there is removed once its outputs are stored: a warm worker leaves nothing behind,
and a ``File`` made there still reaches the next task. Against real servers."""

from __future__ import annotations

from pathlib import Path

import anyio

from tests import scratch_workflows
from tests.helpers.stack import services_and_client
from tests.helpers.states import final_state

DEADLINE = 60.0


async def test_an_attempts_temporary_files_are_removed_once_it_ended(nats_url: str, database_url: str) -> None:
    async with services_and_client(nats_url, database_url, concurrency=1) as client:
        with anyio.fail_after(DEADLINE):
            first = await (await client.launch(scratch_workflows.leaves_temporary_files, {"name": "one"})).result()
            second = await (await client.launch(scratch_workflows.leaves_temporary_files, {"name": "two"})).result()
            passed = await (
                await client.launch(scratch_workflows.passes_a_temporary_file, {"text": "made in a scratch folder"})
            ).result()
        left = [await anyio.Path(folder).exists() for folder, _ in (first, second)]
        worker_folder = await anyio.Path(first[1]).is_dir()
    for folder, subprocess_tempdir in (first, second):
        assert Path(folder).parent == Path(subprocess_tempdir), "the task's subprocess has the same TMPDIR"
    assert left == [False, False], "what each attempt left was removed once it ended"
    assert first[1] == second[1] and worker_folder, "the warm worker's own folder, the same for each of its attempts"
    assert passed == "made in a scratch folder", "a File returned from there was stored before it was removed"


async def test_a_worker_that_died_mid_attempt_has_its_temporary_files_removed(
    nats_url: str, database_url: str, tmp_path: Path
) -> None:
    note = tmp_path / "made"
    async with services_and_client(nats_url, database_url, concurrency=1) as client:
        with anyio.fail_after(DEADLINE):
            handle = await client.launch(scratch_workflows.dies_after_temporary_files, {"note": str(note)})
            state = await final_state(client, handle.id, timeout=DEADLINE)
        made = Path(await anyio.Path(note).read_text())
        left = await anyio.Path(made.parent).exists()  # the dead worker's folder, with what its attempt made
    assert state.status == "failed" and state.error is not None and state.error.error_type == "WorkerLost"
    assert not left, "removed when the worker was replaced"
