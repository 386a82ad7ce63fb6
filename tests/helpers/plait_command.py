"""Running the ``plait`` command line as a separate process, from the repository's root."""

from __future__ import annotations

import os
import subprocess
import sys

import anyio.to_thread

from tests.helpers.processes import REPO

PLAIT = [sys.executable, "-m", "plait_cli.main"]


def plait_command(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PLAIT, *args], cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True, timeout=timeout
    )


async def plait_command_async(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The command in a thread, so that the services sharing this event loop go on serving it."""
    return await anyio.to_thread.run_sync(plait_command, args, env)
