"""Workload 5: one execution of N no-op nodes as a fan-out (and a join); nodes/s and the plait process's RSS.

Any failure (a record over nats max_payload, a timeout) is reported as "failed: <reason>", not raised.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import msgspec

from bench.procs import Group
from bench.workloads import make_fan_out
from plait import codec
from plait.client import AsyncClient


def log_size(log: Path) -> int:
    try:
        return log.stat().st_size
    except OSError:
        return 0


def last_error(log: Path, since: int = 0) -> str:
    """The last error the services logged after byte ``since`` (event and exception's last line)."""
    try:
        with log.open("rb") as file:
            file.seek(since)
            lines = file.read().decode(errors="replace").splitlines()
    except OSError:
        return ""
    for line in reversed(lines):
        try:
            record = msgspec.json.decode(line)
        except msgspec.DecodeError:
            continue
        if isinstance(record, dict) and record.get("level") in ("error", "critical"):
            exception = str(record.get("exception", "")).strip().splitlines()
            return f"{record.get('event')}: {exception[-1] if exception else ''}"
    return ""


async def run(client: AsyncClient, width: int, plait: Group, log: Path) -> dict[str, Any]:
    build_started = time.perf_counter()
    workflow = make_fan_out(width, name="widest")
    build_s = time.perf_counter() - build_started
    spec_mib = len(codec.encode(workflow.spec)) / 2**20
    plait.reset_peak()
    since = log_size(log)
    started = time.perf_counter()
    stage = "register"
    try:
        await client.register(workflow)
        stage = "launch"
        execution_id = await client.launch(workflow, {"seed": 0}, timeout=60)
        stage = "wait"
        state = await client.wait(execution_id, timeout=max(300.0, width / 20))
    except Exception as exc:
        return {
            "width": width,
            "failed": f"{stage} after {time.perf_counter() - started:.1f} s: {type(exc).__name__}: {exc} "
            f"(workflow spec {spec_mib:.1f} MiB; services' last error: {last_error(log, since) or 'none'})",
            "plait_peak_mb": plait.peak_mb(),
        }
    wall = time.perf_counter() - started
    if state.status != "succeeded":
        return {"width": width, "failed": f"execution {state.status}: {state.error}", "plait_peak_mb": plait.peak_mb()}
    return {
        "width": width,
        "nodes_per_s": (width + 1) / wall,
        "wall_s": wall,
        "build_s": build_s,
        "spec_mib": spec_mib,
        "plait_peak_mb": plait.peak_mb(),
    }
