"""Resident memory of processes, from /proc: current (VmRSS) and peak (VmHWM), resettable peaks."""

from __future__ import annotations

import contextlib
from pathlib import Path


def _status_kib(pid: int, field: str) -> int:
    return _status_kib_text(pid, field) or 0


def children(pid: int) -> list[int]:
    """All descendants of ``pid`` (by PPid), depth first."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        ppid = _status_kib_text(int(entry.name), "PPid")
        if ppid is not None:
            parents.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    stack = [pid]
    while stack:
        for child in parents.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def _status_kib_text(pid: int, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError, ValueError):
        return None
    return None


def rss_mb(pid: int) -> float:
    return _status_kib(pid, "VmRSS") / 1024


def pss_mb(pid: int) -> float:
    """Proportional set size: each shared page divided among the processes mapping it (so summing
    over processes that share libraries, such as forked workers, does not count them several times)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        return 0.0
    return 0.0


def peak_mb(pid: int) -> float:
    return _status_kib(pid, "VmHWM") / 1024


def reset_peak(pid: int) -> None:
    """Set the process's VmHWM back to its current RSS (Linux: write 5 to clear_refs)."""
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")


class Group:
    """A process and, optionally, its descendants (PostgreSQL backends, executor workers)."""

    def __init__(self, pid: int, with_children: bool, exclude: tuple[int, ...] = ()) -> None:
        self.pid, self.with_children, self.exclude = pid, with_children, exclude

    def pids(self) -> list[int]:
        if not self.with_children:
            return [self.pid]
        skip = set(self.exclude)
        for pid in self.exclude:
            skip.update(children(pid))
        return [self.pid] + [p for p in children(self.pid) if p not in skip]

    def rss_mb(self) -> float:
        return sum(rss_mb(p) for p in self.pids())

    def pss_mb(self) -> float:
        return sum(pss_mb(p) for p in self.pids())

    def peak_mb(self) -> float:
        return sum(peak_mb(p) for p in self.pids())

    def reset_peak(self) -> None:
        for pid in self.pids():
            reset_peak(pid)
