"""What the Kubernetes tests run, against the API stand-in (tests/test_kubernetes_backend.py) or a real cluster
(tests/test_kubernetes_real_cluster.py): the same executor, back end and workflow, only the API server's
configuration (and the NATS URL the pods connect to) differ."""

from __future__ import annotations

import contextlib
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from kubernetes_asyncio.client import Configuration

from plait.client import AsyncClient
from plait.core.state import Execution
from plait.sdk.loader import load_module
from plait.sdk.workflow import Workflow
from plait_executor import ExecutorService
from plait_executor.backend import AttemptBackend
from plait_executor.kubernetes.backend import KubernetesBackend, KubernetesTarget, kubernetes_backend
from tests.helpers.running import running
from tests.helpers.states import final_state

MAP_FLOW = """
from plait import map_task, task, workflow


@task
def numbers(n: int) -> list[int]:
    return list(range(n))


@task
def square(x: int) -> int:
    return x * x


@task
def total(values: list[int]) -> int:
    return sum(values)


@workflow
def flow(n: int) -> int:
    return total(values=map_task(square, over=["x"], concurrency={concurrency})(x=numbers(n=n)))
"""


def kubernetes_executor(
    nats_url: str,
    target: KubernetesTarget,
    configuration: Configuration,
    replica: str,
    backends: list[KubernetesBackend],
    concurrency: int | None = None,
) -> ExecutorService:
    """An executor of ``target``'s cluster whose back end is Kubernetes Jobs through the API server
    ``configuration`` names; each back end it makes is appended to ``backends``."""

    @contextlib.asynccontextmanager
    async def backend() -> AsyncIterator[AttemptBackend]:
        async with kubernetes_backend(target, configuration) as made:
            backends.append(made)
            yield made

    return ExecutorService(
        nats_url,
        replica=replica,
        cluster=target.cluster,
        ack_wait_seconds=1.0,
        grace_seconds=0.0,
        backend=backend,
        concurrency=concurrency,
        callout_seed_file=target.callout_seed_file,  # it answers its pods' auth callout too
    )


def write_map_flow(folder: Path, concurrency: int) -> Workflow[Any, Any]:
    """A workflow of three nodes, the middle one a map, written to its own module in ``folder``: registered with
    its source bundle, the pods need nothing of this repository in their image."""
    folder.mkdir(parents=True, exist_ok=True)
    module = f"plait_map_flow_{uuid.uuid4().hex[:12]}"
    path = folder / f"{module}.py"
    path.write_text(MAP_FLOW.format(concurrency=concurrency))
    sys.modules.pop(module, None)
    flow: Workflow[Any, Any] = load_module(module, str(path)).flow
    return flow


async def run_map_flow(
    nats_url: str, target: KubernetesTarget, configuration: Configuration, folder: Path, items: int, timeout: float
) -> tuple[Execution, list[KubernetesBackend]]:
    """Run the map flow over ``items`` items (4 at a time) on ``target``'s cluster, fast registered; its final
    state, checked, and the back ends that ran it."""
    backends: list[KubernetesBackend] = []
    executor = kubernetes_executor(nats_url, target, configuration, "k8s-executor", backends, concurrency=items)
    flow = write_map_flow(folder, concurrency=4)
    async with running(executor.run), await AsyncClient.connect(nats_url) as client:
        handle = await client.launch(flow, {"n": items}, fast=True, cluster=target.cluster)
        state = await final_state(client, handle.id, timeout=timeout)
    check_map_flow(state, items)
    return state, backends


def check_map_flow(state: Execution, items: int) -> None:
    assert state.status == "succeeded", state.error
    assert state.outputs == {"result": sum(x * x for x in range(items))}
    workers = {attempt.worker for node in state.nodes.values() for attempt in node.all_attempts()}
    assert all(worker.startswith("plait-") for worker in workers), f"pods ran every attempt: {workers}"
    squares = state.nodes["square"]
    assert squares.attempt_count == len(list(squares.all_attempts())) == items
    # An Indexed Job's pod is named (and its hostname is) "<job>-<index>"; the runtime reports it as its worker.
    jobs = {attempt.worker.rsplit("-", 1)[0] for attempt in squares.all_attempts()}
    assert len(jobs) < items, f"{len(jobs)} Jobs for {items} items"
