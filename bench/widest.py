"""Workload 5: one execution of N no-op items, as one map task (at most 1,000 at a time) and a join; items/s, the
scheduler's peak RSS (and all plait processes'), and the largest record the execution wrote.

While it runs, the streams plait writes records to (events, commands, dispatch) take no message over 1 MiB
(``max_msg_size``, put back afterwards): a larger record is refused by the server, and the workload fails naming it.
Any failure (a record too large, a timeout) is reported as "failed: <reason>", not raised.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
from nats.js import JetStreamContext

from bench import procs
from bench.cpu import service_name
from bench.procs import Group
from bench.workloads import wide_map
from plait import codec
from plait.client import AsyncClient
from plait.protocol import subjects

RECORD_LIMIT = 1024 * 1024
LIMITED_STREAMS = (subjects.EVENTS_STREAM, subjects.COMMANDS_STREAM, subjects.DISPATCH_STREAM)


@contextlib.asynccontextmanager
async def records_limited(js: JetStreamContext, limit: int = RECORD_LIMIT) -> AsyncIterator[None]:
    """The streams plait writes records to refuse any message over ``limit`` bytes, for the block."""
    before: dict[str, int] = {}
    try:
        for name in LIMITED_STREAMS:
            config = (await js.stream_info(name)).config
            before[name] = config.max_msg_size if config.max_msg_size is not None else -1
            config.max_msg_size = limit
            await js.update_stream(config)
        yield
    finally:
        for name, size in before.items():
            config = (await js.stream_info(name)).config
            config.max_msg_size = size
            await js.update_stream(config)


def scheduler_pid() -> int | None:
    """The embedded stack's scheduler process (a child of this one), if it runs as a process of its own."""
    return next((pid for pid in procs.children(os.getpid()) if service_name(pid) == "scheduler"), None)


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
    scheduler = scheduler_pid()
    if scheduler is not None:
        procs.reset_peak(scheduler)

    def peaks() -> dict[str, float]:
        found = {"plait_peak_mb": plait.peak_mb()}
        if scheduler is not None:
            found["scheduler_peak_mb"] = procs.peak_mb(scheduler)
        return found

    since = log_size(log)
    started = time.perf_counter()
    stage = "register"
    try:
        async with records_limited(client.js):
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
            **peaks(),
        }
    wall = time.perf_counter() - started
    if state.status != "succeeded" or state.outputs != {"result": width}:
        failed = f"execution {state.status}: {state.error}; services' last error: {last_error(log, since) or 'none'}"
        return {"width": width, "failed": failed, **peaks()}
    largest = max(len(record.data) for record in await client.records(execution.id))
    return {
        "width": width,
        "nodes_per_s": (width + 1) / wall,
        "wall_s": wall,
        "build_s": build_s,
        "spec_mib": spec_mib,
        "largest_record_kib": largest / 1024,
        **peaks(),
    }
