"""Shared helpers: percentiles, summaries over runs, one launched execution timed."""

from __future__ import annotations

import statistics
import time
from typing import Any

from plait.adapters.event_log import StoredDecision
from plait.client import AsyncClient


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


async def run_once(
    client: AsyncClient, workflow: Any, *, timeout: float = 600, events: bool = False
) -> tuple[float, list[StoredDecision]]:
    """Launch ``workflow``, wait for it; the wall time from launch to outputs, and its events if asked."""
    started = time.perf_counter()
    execution = await client.launch(workflow, {"seed": 0}, timeout=timeout)
    outcome = await execution.wait(timeout=timeout)
    wall = time.perf_counter() - started
    if outcome.status != "succeeded":
        raise RuntimeError(f"{workflow.name} ended {outcome.status}: {outcome.error}")
    return wall, [stored async for stored in execution.events()] if events else []
