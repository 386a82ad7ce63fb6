"""Workload 5: one execution of N no-op items, as one map task (at most 1,000 at a time) and a join; items/s, the
plait processes' RSS, and the largest message the execution wrote (against NATS's max payload).

Any failure (a record over nats max_payload, a timeout) is reported as "failed: <reason>", not raised.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import msgspec

from bench.procs import Group
from bench.workloads import wide_map
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
    workflow = wide_map
    items = list(range(width))
    build_s = time.perf_counter() - build_started
    spec_mib = len(codec.encode(workflow.spec)) / 2**20
    plait.reset_peak()
    since = log_size(log)
    started = time.perf_counter()
    stage = "register"
    try:
        await client.register(workflow)
        stage = "launch"
        execution = await client.launch(workflow, {"xs": items}, timeout=60)
        stage = "wait"
        state = await execution.wait(timeout=max(300.0, width / 20))
    except Exception as exc:
        return {
            "width": width,
            "failed": f"{stage} after {time.perf_counter() - started:.1f} s: {type(exc).__name__}: {exc} "
            f"(workflow spec {spec_mib:.1f} MiB; services' last error: {last_error(log, since) or 'none'})",
            "plait_peak_mb": plait.peak_mb(),
        }
    wall = time.perf_counter() - started
    if state.status != "succeeded" or state.outputs != {"result": width}:
        return {"width": width, "failed": f"execution {state.status}: {state.error}", "plait_peak_mb": plait.peak_mb()}
    largest = max(len(record.data) for record in await client.records(execution.id))
    return {
        "width": width,
        "nodes_per_s": (width + 1) / wall,
        "wall_s": wall,
        "build_s": build_s,
        "spec_mib": spec_mib,
        "largest_record_kib": largest / 1024,
        "plait_peak_mb": plait.peak_mb(),
    }
