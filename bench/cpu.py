"""CPU time per process role, from /proc/<pid>/stat (user + system), to say where a workload's CPU went.

Roles: the bench process itself ("client"), each plait service process by its sub-command ("scheduler",
"executor", "catalog"), the executor's worker processes ("workers"), "nats-server" and "postgres" (its backends
included). A process that exits between two readings loses its time; the services and workers outlive a run.
"""

from __future__ import annotations

import os
from pathlib import Path

import anyio

TICK = os.sysconf("SC_CLK_TCK")
ROLES = ("client", "scheduler", "executor", "workers", "catalog", "nats-server", "postgres")
QUIET_SHARE = 0.05  # of one core, over every role but the bench's own: idle services spend 2 % (heartbeats...)
QUIET_WINDOW_SECONDS = 0.5
LONGEST_SETTLE_SECONDS = 10.0


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds) of a process, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) "; comm may hold spaces
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICK


def service_name(pid: int) -> str | None:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    if b"plait_cli.main" in argv:
        after = argv[argv.index(b"plait_cli.main") + 1 :]
        return after[0].decode() if after and after[0] else None
    return None


def snapshot(root: int, named: dict[int, str]) -> dict[str, float]:
    """CPU seconds so far per role, over ``root`` and its descendants; ``named`` gives roles of given pids
    (their descendants take the same role)."""
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            stats[int(entry.name)] = stat
    roles: dict[int, str] = {root: "client", **named}

    def role(pid: int) -> str | None:
        chain: list[int] = []
        while pid not in roles:
            if pid not in stats or pid <= 1:
                return None
            chain.append(pid)
            pid = stats[pid][0]
        found = roles[pid]
        for child in reversed(chain):
            if found == "client":
                found = service_name(child) or "client"
            elif found == "executor":
                found = "workers"
            roles[child] = found
        return found

    totals: dict[str, float] = {}
    for pid, (_, seconds) in stats.items():
        if (name := role(pid)) is not None:
            totals[name] = totals.get(name, 0.0) + seconds
    return totals


async def settle(root: int, named: dict[int, str]) -> float:
    """Wait until the services have gone quiet (under ``QUIET_SHARE`` of a core over ``QUIET_WINDOW_SECONDS``), at
    most ``LONGEST_SETTLE_SECONDS``; the seconds waited. Taken before and after a workload's CPU readings, it
    counts the work a workload leaves behind (the catalog projecting its last decisions) to that workload, not to
    the next one."""
    started = anyio.current_time()
    previous = _busy(snapshot(root, named))
    while anyio.current_time() - started < LONGEST_SETTLE_SECONDS:
        await anyio.sleep(QUIET_WINDOW_SECONDS)
        now = _busy(snapshot(root, named))
        if now - previous < QUIET_SHARE * QUIET_WINDOW_SECONDS:
            break
        previous = now
    return anyio.current_time() - started


def _busy(totals: dict[str, float]) -> float:
    return sum(seconds for name, seconds in totals.items() if name != "client")


def seconds_of(pid: int) -> float:
    """CPU seconds so far of one process (0 once it is gone)."""
    stat = _stat(pid)
    return stat[1] if stat else 0.0


def per_task(before: dict[str, float], after: dict[str, float], tasks: int) -> dict[str, float]:
    """Milliseconds of CPU per task per role between two snapshots, and their "total"."""
    spent = {name: (after.get(name, 0.0) - before.get(name, 0.0)) * 1000 / tasks for name in ROLES}
    return {**spent, "total": sum(spent.values())}
