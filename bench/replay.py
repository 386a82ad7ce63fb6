"""Workload 6: rebuild an execution's state from ~1,000,000 stored events (read + apply, and apply only).

The history is made by the pure core: a fan-out of W no-op nodes and a join whose tasks fail R times
before they succeed (so each node has 3R + 3 events and the launch record stays under max_payload),
with the results batched so one decision holds many events. It is stored once as Decision records
on one execution subject (pipelined publishes), then rebuilt with ``EventStore.load`` as the scheduler
does (read+apply); reading and decoding alone (read only) and ``apply_decision`` alone (apply only) are
timed separately.
"""

from __future__ import annotations

import asyncio
import math
import time
from datetime import UTC, datetime
from typing import Any

import msgspec
from nats.js.client import JetStreamContext

from bench.workloads import make_fan_out
from plait import codec
from plait.adapters.event_store import EventStore
from plait.core.commands import Command, LaunchExecution, ReportAttemptResult, ReportAttemptStarted, ResolvedLaunch
from plait.core.decide import decide_batch
from plait.core.events import Decision, NodeQueued, TaskError
from plait.core.state import Execution, apply_decision
from plait.protocol import subjects
from plait.replay import paused_gc

BATCH = 500  # attempts per decision: started + result commands for each
EXECUTION_ID = "bench-replay"


class History(msgspec.Struct):
    records: list[bytes]
    events: int
    width: int
    retries: int
    generate_s: float


def _shape(target: int) -> tuple[int, int]:
    width = max(10, min(10_000, target // 100))
    retries = max(0, math.ceil(target / (3 * width)) - 1)
    return width, retries


def generate(target: int) -> History:
    started = time.perf_counter()
    width, retries = _shape(target)
    spec = make_fan_out(width, name="replay_fan_out").spec
    spec = msgspec.structs.replace(
        spec, tasks={n: msgspec.structs.replace(t, retries=retries) for n, t in spec.tasks.items()}
    )
    output = {n: t.interface.outputs[0].name for n, t in spec.tasks.items()}
    launch = LaunchExecution(
        command_id=f"launch:{EXECUTION_ID}",
        execution_id=EXECUTION_ID,
        project="bench",
        domain="replay",
        workflow=spec.name,
        version=spec.version,
        inputs={"seed": 0},
    )
    records: list[bytes] = []
    previous = ""
    total = 0
    state: Execution | None = None
    batch: list[Command | ResolvedLaunch] = [ResolvedLaunch(command=launch, workflow=spec)]
    pending: list[NodeQueued] = []
    while batch:
        outcome = decide_batch(state, batch, datetime.now(UTC))
        if outcome.rejections:
            raise RuntimeError(f"replay history: rejected {outcome.rejections[0][1]}")
        state = outcome.state
        decision = Decision(
            execution_id=EXECUTION_ID,
            at=datetime.now(UTC),
            replica="bench",
            commands=tuple(outcome.command_ids),
            previous=previous,
            events=tuple(outcome.events),
        )
        data = codec.encode(decision)
        previous = codec.digest(data)
        records.append(data)
        total += len(outcome.events)
        pending += [e for e in outcome.events if isinstance(e, NodeQueued)]
        batch = []
        for queued in pending[:BATCH]:
            common: dict[str, Any] = {
                "execution_id": EXECUTION_ID,
                "node": queued.node,
                "attempt_id": queued.attempt_id,
                "worker": "bench",
            }
            batch.append(ReportAttemptStarted(command_id=f"s:{queued.attempt_id}", **common))
            if queued.attempt <= retries:
                error = TaskError(kind="user", message="flaky")
                batch.append(ReportAttemptResult(command_id=f"r:{queued.attempt_id}", error=error, **common))
            else:
                outputs = {output[queued.task]: 0}
                batch.append(ReportAttemptResult(command_id=f"r:{queued.attempt_id}", outputs=outputs, **common))
        del pending[:BATCH]
    if state is None or state.status != "succeeded":
        raise RuntimeError(f"replay history did not end in success: {state.status if state else None}")
    return History(records, total, width, retries, time.perf_counter() - started)


def subject() -> str:
    return subjects.execution_subject("bench", "replay", EXECUTION_ID)


async def store(js: JetStreamContext, history: History, window: int = 64) -> float:
    """Publish the records pipelined, ``window`` acks in flight; returns seconds taken."""
    started = time.perf_counter()
    for i in range(0, len(history.records), window):
        acks = [
            await js.publish_async(subject(), data, stream=subjects.EVENTS_STREAM)
            for data in history.records[i : i + window]
        ]
        await asyncio.gather(*acks)
    return time.perf_counter() - started


async def read_and_apply(js: JetStreamContext, history: History) -> float:
    """Events/s of ``EventStore.load``: the scheduler's way of building a state from the log (batched
    direct gets, decoding, digests, ``apply_decision``)."""
    started = time.perf_counter()
    state = await EventStore(js).load(subject())
    elapsed = time.perf_counter() - started
    if state is None or state.status != "succeeded" or state.decisions != len(history.records):
        raise RuntimeError(f"replay read back {state.decisions if state else 0} of {len(history.records)} records")
    return history.events / elapsed


async def read_only(js: JetStreamContext, history: History) -> tuple[float, list[tuple[Decision, int, str]]]:
    """Events/s of reading and decoding the records as ``load`` does, without applying; and the decoded records."""
    started = time.perf_counter()
    with paused_gc():
        decoded = [(s.decision, s.sequence, s.digest) async for s in EventStore(js).read(subject())]
    elapsed = time.perf_counter() - started
    if len(decoded) != len(history.records):
        raise RuntimeError(f"replay read back {len(decoded)} of {len(history.records)} records")
    return history.events / elapsed, decoded


def apply_only(decoded: list[tuple[Decision, int, str]], events: int) -> float:
    """Events/s of ``apply_decision`` over decoded records (with the collector paused, as ``load`` does)."""
    started = time.perf_counter()
    state: Execution | None = None
    with paused_gc():
        for decision, sequence, digest in decoded:
            state = apply_decision(state, decision, sequence, digest)
    return events / (time.perf_counter() - started)
