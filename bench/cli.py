"""Workload 9: the fan-out and the chain through the real ``plait run`` against the bench's stack, its live view
on: the command's stderr is a pseudo-terminal (120x40), so rich draws the live view as on a user's terminal; its
stdout (``--json``, for the execution id) is a pipe.

Per run: tasks/s of the fan-out and the chain's step times from the execution's decisions (launch decision →
last decision, as the services saw it), and the whole command's wall (Python start, import, registration,
launch, following) for what a user waits.
"""

from __future__ import annotations

import fcntl
import os
import pty
import resource
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import anyio.to_thread
import msgspec

from bench.chain import steps
from bench.measure import percentile
from plait.client import AsyncClient

REPO = Path(__file__).resolve().parent.parent
MODULE = """from bench.workloads import make_chain, make_fan_out

fan_out = make_fan_out({fan_out})
chain = make_chain({chain})
"""


def write_module(folder: Path, fan_out: int, chain: int) -> Path:
    """A workflow file for ``plait run``: the bench's own fan-out and chain at these sizes."""
    path = folder / "cli_workloads.py"
    path.write_text(MODULE.format(fan_out=fan_out, chain=chain))
    return path


def _drain(fd: int, sink: bytearray) -> None:
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the command closed the terminal
            return
        if not chunk:
            return
        sink.extend(chunk)


def plait_run(target: str, env: dict[str, str]) -> tuple[float, str, int]:
    """``plait run --json TARGET`` with stderr on a pseudo-terminal: its wall (s), execution id, CPU (s)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    screen = bytearray()
    reader = threading.Thread(target=_drain, args=(leader, screen), daemon=True)
    reader.start()
    started, cpu = time.perf_counter(), _children_cpu()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "plait_cli.main", "run", "--json", target],
            env={**env, "TERM": "xterm-256color"},
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=follower,
            timeout=600,
            check=False,
        )
    finally:
        os.close(follower)
    wall, cpu = time.perf_counter() - started, _children_cpu() - cpu  # the command is the one child reaped
    reader.join(timeout=10)
    os.close(leader)
    if done.returncode != 0:
        tail = screen[-2000:].decode(errors="replace")
        raise RuntimeError(f"plait run {target} exited with {done.returncode}: {tail}")
    summary = msgspec.json.decode(done.stdout.strip().splitlines()[-1])
    return wall, summary["execution_id"], cpu


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def run(client: AsyncClient, module: Path, env: dict[str, str], fan_out: int, chain: int) -> dict[str, float]:
    """One run of each: the fan-out's tasks/s and the chain's step p50/p99 from their decisions, and the walls."""
    result: dict[str, float] = {}
    wall, execution_id, cpu = await anyio.to_thread.run_sync(plait_run, f"{module}:fan_out", env)
    decisions = [stored async for stored in client.events(execution_id)]
    span = (decisions[-1].decision.at - decisions[0].decision.at).total_seconds()
    result |= {
        "fan_out_tasks_per_s": (fan_out + 1) / span,
        "fan_out_command_s": wall,
        "fan_out_command_cpu_ms": cpu * 1000 / (fan_out + 1),
    }
    wall, execution_id, _ = await anyio.to_thread.run_sync(plait_run, f"{module}:chain", env)
    step, _ = steps([stored async for stored in client.events(execution_id)], chain)
    result |= {"chain_step_p50_ms": percentile(step, 0.5), "chain_step_p99_ms": percentile(step, 0.99)}
    result["chain_command_s"] = wall
    return result


def environment(nats_url: str, database_url: str, home: Path) -> dict[str, str]:
    """The command's environment: the bench's stack and a home of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLAIT_")}
    return env | {
        "PLAIT_NATS_URL": nats_url,
        "PLAIT_DATABASE_URL": database_url,
        "PLAIT_HOME": str(home),
    }
