"""Workload 8: a DAG read from a JSON file (bench/dags/*.json), each node a no-op task fed its parents' outputs,
and a join of the sinks; tasks/s from launch to outputs.

A DAG file: ``{"name": str, "source": str, "parents": [[int, ...], ...]}``, node i's parents given by index,
every parent before its children (topological order).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from bench.measure import run_once
from bench.workloads import join, noop
from plait import workflow
from plait.client import AsyncClient
from plait.sdk.workflow import Workflow

DAGS = Path(__file__).with_name("dags")


class Dag(msgspec.Struct, frozen=True):
    name: str
    source: str
    parents: list[list[int]]

    @property
    def tasks(self) -> int:
        """Tasks an execution runs: one per node and the join of the sinks."""
        return len(self.parents) + 1


def load(path: Path) -> Dag:
    """A DAG file, checked: parents are earlier nodes."""
    dag = msgspec.json.decode(path.read_bytes(), type=Dag)
    for i, parents in enumerate(dag.parents):
        if any(not 0 <= p < i for p in parents):
            raise ValueError(f"{path}: node {i} has a parent that is not an earlier node: {parents}")
    return dag


def sinks(dag: Dag) -> list[int]:
    has_child = {p for parents in dag.parents for p in parents}
    return [i for i in range(len(dag.parents)) if i not in has_child]


def make_dag(dag: Dag) -> Workflow[Any, Any]:
    """The DAG as a plait workflow: roots are ``noop``, other nodes ``join`` of their parents' outputs."""

    def body(seed: int = 0) -> int:
        outputs: list[Any] = []
        for i, parents in enumerate(dag.parents):
            outputs.append(join(values=[outputs[p] for p in parents]) if parents else noop(x=i))
        return join(values=[outputs[i] for i in sinks(dag)])

    body.__name__ = body.__qualname__ = "dag_" + "".join(c if c.isalnum() else "_" for c in dag.name)
    return workflow(body)


def files(names: list[str] | None = None) -> list[Path]:
    """The DAG files to run: those named (a path, or a name under bench/dags), else every bench/dags/*.json."""
    if not names:
        return sorted(DAGS.glob("*.json"))
    return [Path(n) if n.endswith(".json") else DAGS / f"{n}.json" for n in names]


async def run(client: AsyncClient, workflow: Any, tasks: int) -> dict[str, float]:
    wall, _ = await run_once(client, workflow)
    return {"tasks_per_s": tasks / wall, "wall_s": wall}
