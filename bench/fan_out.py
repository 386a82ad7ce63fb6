"""Workload 1: N independent no-op tasks and a join; tasks/s from launch to outputs."""

from __future__ import annotations

from typing import Any

from bench.measure import run_once
from plait.client import AsyncClient


async def run(client: AsyncClient, workflow: Any, width: int) -> dict[str, float]:
    wall, _ = await run_once(client, workflow)
    return {"tasks_per_s": (width + 1) / wall, "wall_s": wall}
