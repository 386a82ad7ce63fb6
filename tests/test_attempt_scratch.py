"""An attempt in a local worker has a temporary folder of its own (``tempfile`` and its subprocesses' ``TMPDIR``),
removed once its outputs are stored: a warm worker leaves nothing behind, and a ``File`` made there still reaches the
next task. Against real servers."""

from __future__ import annotations

from pathlib import Path

import anyio

from tests import scratch_workflows
from tests.helpers.stack import services_and_client

DEADLINE = 60.0


async def test_an_attempts_temporary_files_are_removed_once_it_ended(nats_url: str, database_url: str) -> None:
    async with services_and_client(nats_url, database_url, concurrency=1) as client:
        with anyio.fail_after(DEADLINE):
            first = await (await client.launch(scratch_workflows.leaves_temporary_files, {"name": "one"})).result()
            second = await (await client.launch(scratch_workflows.leaves_temporary_files, {"name": "two"})).result()
            passed = await (
                await client.launch(scratch_workflows.passes_a_temporary_file, {"text": "made in a scratch folder"})
            ).result()
    for folder, subprocess_tempdir in (first, second):
        assert Path(folder).parent == Path(subprocess_tempdir), "the task's subprocess has the same TMPDIR"
        assert not await anyio.Path(subprocess_tempdir).exists(), "removed with what the task left there"
    assert Path(first[0]).parent != Path(second[0]).parent, "one folder per attempt, in the same warm worker"
    assert Path(first[1]).parent == Path(second[1]).parent, "under the executor's folder of attempts' folders"
    assert passed == "made in a scratch folder", "a File returned from there was stored before the folder went"
