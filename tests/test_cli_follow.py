"""Leaving and finding an execution again through the real CLI: `plait run --detach` says how to follow it,
`plait executions follow ID` re-attaches until it ends, and the live view's clock moves while a task runs."""

from __future__ import annotations

import io
import re
from pathlib import Path

from rich.console import Console

from plait_cli.follow import follow_until_ended
from tests import workflows
from tests.helpers.plait_command import plait_command_async
from tests.helpers.stack import services_and_client


async def test_a_detached_run_is_followed_to_its_end_from_another_command(
    tmp_path: Path, nats_url: str, database_url: str
) -> None:
    env = {"PLAIT_NATS_URL": nats_url, "PLAIT_HOME": str(tmp_path / "home")}
    async with services_and_client(nats_url, database_url):
        detached = await plait_command_async(["run", "--detach", "examples/hello.py:greet", "--name", "later"], env)
        assert detached.returncode == 0, detached.stderr
        execution_id = detached.stdout.strip()
        assert f"follow it with: plait executions follow {execution_id}" in detached.stderr
        followed = await plait_command_async(["executions", "follow", execution_id], env)
        unknown = await plait_command_async(["executions", "follow", "no-such-execution"], env)
    assert followed.returncode == 0, followed.stderr
    assert 'result = "HELLO, LATER! HELLO, LATER!"' in followed.stdout
    assert "succeeded in" in followed.stderr
    assert unknown.returncode == 2
    assert (
        unknown.stderr.strip() == "plait: NotFound: execution no-such-execution does not exist in default/development"
    )


async def test_the_live_views_clock_moves_while_a_task_runs(nats_url: str, database_url: str) -> None:
    terminal = Console(file=io.StringIO(), force_terminal=True, width=120)
    async with services_and_client(nats_url, database_url) as client:
        execution = await client.launch(workflows.paused, {"seconds": 1.5})
        final = await follow_until_ended(client, execution.id, terminal)
    assert final.status == "succeeded"
    assert isinstance(terminal.file, io.StringIO)
    drawn = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", terminal.file.getvalue())
    running_times = set(re.findall(r"running\s+1\s+(\d+\.\d\d)s", drawn))
    assert len(running_times) >= 3, running_times
