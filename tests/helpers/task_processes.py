"""The processes tasks ran in, by the process ids they left in a directory: for tests that check they were killed."""

from __future__ import annotations

import os
from pathlib import Path

import anyio


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def killed(directory: Path, timeout: float = 60.0) -> list[int]:
    """The process ids the tasks left in ``directory``, once none of them is alive (waiting up to ``timeout``)."""
    pids = [int(name) for name in os.listdir(directory)]
    with anyio.fail_after(timeout):
        while True:
            if not any(alive(pid) for pid in pids):
                return pids
            await anyio.sleep(0.05)
