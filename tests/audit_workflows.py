"""Workflows for the replay, audit and wire tests, and a history of executions that ended every way."""

from __future__ import annotations

import os
import time
from pathlib import Path

import anyio

from plait import task, workflow
from plait.adapters.commands import publish_command
from plait.client import AsyncClient
from plait.core.commands import ReportAttemptStarted
from plait.core.events import CommandRejected
from tests.helpers.states import final_state


@task
def double(x: int) -> int:
    return 2 * x


@task(retries=1)
def unlucky(x: int) -> int:
    raise RuntimeError(f"bad luck with {x}")


@task
def hold(path: str) -> str:
    """Runs until the file at ``path`` exists."""
    while not os.path.exists(path):
        time.sleep(0.01)
    return path


@workflow
def doubled(x: int) -> int:
    return double(x=double(x=x))


@workflow
def retried(x: int) -> int:
    return double(x=unlucky(x=x))


@workflow
def held(path: str) -> str:
    return hold(path=path)


async def _rejected(client: AsyncClient, execution_id: str) -> None:
    async for stored in client.events(execution_id, until_terminal=False):
        if any(isinstance(event, CommandRejected) for event in stored.decision.events):
            return


async def make_history(client: AsyncClient, scratch: Path) -> dict[str, str]:
    """A succeeded, a failed (after a retry) and an aborted execution (with a rejected command): name → id."""
    ids = {
        "succeeded": (await client.launch(doubled, {"x": 3})).id,
        "failed": (await client.launch(retried, {"x": 1})).id,
        "aborted": (await client.launch(held, {"path": str(scratch / "release")})).id,
    }
    bogus = ReportAttemptStarted(
        command_id=f"bogus-start:{ids['aborted']}",
        execution_id=ids["aborted"],
        node="hold",
        attempt_id="no-such-attempt",
        worker="w",
    )
    await publish_command(client.js, bogus, client.project, client.domain)
    with anyio.fail_after(60):
        await _rejected(client, ids["aborted"])
    await client.abort(ids["aborted"], "operator said so")
    for execution_id in ids.values():
        await final_state(client, execution_id, timeout=60)
    (scratch / "release").touch()
    return ids
