"""What every fault test does around its fault: real service processes, many short executions, and at the end
the invariant checker over the whole log with the counts (faults injected, executions, lost: must be 0)."""

from __future__ import annotations

import contextlib
import dataclasses
import random
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import anyio.to_thread

from plait.audit import Problem
from plait.audit_lineage import MAX_EDGES, verify_lineage
from plait.client import AsyncClient
from plait.errors import Timeout
from plait.invariants import check_execution
from plait.replay import replay, timeline
from plait.sdk import Workflow
from tests import workflows
from tests.helpers.processes import ServiceProcess

ACK_WAIT = "2"
SHORT_WORKFLOWS: list[tuple[Workflow[..., Any], dict[str, Any]]] = [
    (workflows.add_two, {"a": 1, "b": 2}),
    (workflows.sum_of_squares, {"n": 4}),
    (workflows.failing, {}),
    (workflows.chain, {"start": 1}),
]


def service_env(nats_url: str, **extra: str) -> dict[str, str]:
    return {"PLAIT_NATS_URL": nats_url, "PLAIT_ACK_WAIT_SECONDS": ACK_WAIT, "PLAIT_CONCURRENCY": "2", **extra}


def start_service(service: str, env: dict[str, str]) -> ServiceProcess:
    """``plait <service>`` in a process, once it has logged that it started."""
    process = ServiceProcess(service, env)
    process.wait_for_event(f"{service}_started", timeout=60)
    return process


@contextlib.contextmanager
def stopped_at_exit(processes: list[ServiceProcess]) -> Iterator[list[ServiceProcess]]:
    """Every process of the list (as it is at exit: restarted ones included) is stopped when the test ends."""
    try:
        yield processes
    finally:
        for process in processes:
            process.stop()


@dataclasses.dataclass
class FaultReport:
    """What a fault test did and found: printed so the counts can be quoted."""

    name: str
    faults: int = 0
    executions: int = 0
    ended: int = 0
    missed_waits: int = 0  # executions that ended in the log while client.wait did not see it
    problems: list[Problem] = dataclasses.field(default_factory=list)

    @property
    def lost(self) -> int:
        return self.executions - self.ended

    def __str__(self) -> str:
        kinds = Counter(problem.kind for problem in self.problems)
        return (
            f"{self.name}: faults injected {self.faults}, executions {self.executions}, ended {self.ended}, "
            f"lost {self.lost}, invariant problems {len(self.problems)} {dict(kinds) if kinds else ''}".rstrip()
            + (f", client waits that missed an end {self.missed_waits}" if self.missed_waits else "")
        )

    def check(self) -> None:
        print(self)
        assert self.problems == [], "\n".join(str(p) for p in self.problems[:20])
        assert self.lost == 0, str(self)


async def launch_many(client: AsyncClient, count: int, seed: int = 0) -> list[str]:
    """``count`` short executions, launched a few at a time."""
    rng = random.Random(seed)
    ids: list[str] = []
    for wf, _ in SHORT_WORKFLOWS:  # one by one: concurrent registrations of one version race on a cluster
        await client.register(wf)

    async def one() -> None:
        wf, inputs = rng.choice(SHORT_WORKFLOWS)
        ids.append((await client.launch(wf, inputs, timeout=60)).id)

    for start in range(0, count, 10):
        async with anyio.create_task_group() as tg:
            for _ in range(min(10, count - start)):
                tg.start_soon(one)
    return ids


async def wait_all(client: AsyncClient, ids: list[str], timeout: float, report: FaultReport) -> None:
    """Wait (together, up to ``timeout`` seconds) for the executions to end, and count those that did in
    ``report``. One whose ``client.wait`` gave up is read from the log: ended there, it counts as ended and as a
    missed wait (a client defect, not a lost execution); not ended, its history is printed."""

    async def one(execution_id: str) -> None:
        try:
            await client.wait(execution_id, timeout=timeout)
        except Timeout:
            records = await client.records(execution_id)
            if not replay(records).terminal:
                print(f"execution {execution_id} did not end within {timeout:.0f} s:")
                for t in timeline(records):
                    print(f"  {t.sequence:>6} {t.at:%H:%M:%S.%f} {t.replica:<10} {t.event:<24} {t.attempt_id or ''}")
                return
            print(f"client.wait({execution_id}) missed the end that the log holds")
            report.missed_waits += 1
        report.ended += 1

    async with anyio.create_task_group() as tg:
        for execution_id in ids:
            tg.start_soon(one, execution_id)


async def audit_log(client: AsyncClient, *, catalog: bool = False) -> list[Problem]:
    """The invariant checker over every execution of the log (each must have ended), and optionally the catalog."""
    problems: list[Problem] = []
    for execution_id in await client.execution_ids():
        records = await client.records(execution_id)
        row = None
        if catalog:
            state = replay(records)
            row = await client.show_execution(execution_id, min_sequence=state.last_sequence, timeout=60)
            graph = await client.lineage(execution_id, depth=0, max_edges=MAX_EDGES, timeout=60)
            problems += verify_lineage(records, graph)
        problems += check_execution(records, ended=True, catalog_execution=row)
    return problems


@contextlib.asynccontextmanager
async def connected(nats_url: str) -> AsyncIterator[AsyncClient]:
    async with await AsyncClient.connect(nats_url) as client:
        yield client


async def in_thread(function: Any, *args: Any) -> Any:
    return await anyio.to_thread.run_sync(function, *args)
