"""A Kubernetes executor process killed with SIGKILL while the items of a map run as its Indexed Job: a second
executor process adopts that Job (it makes no second one for the same items), and each item runs in one pod, once.

The Kubernetes API is the stand-in (tests/helpers/kube_api/) on loopback, in this process, with its local kubelet;
the executors are ``plait executor`` processes with the Kubernetes back end, pointed at the stand-in by a kubeconfig
file. Each item's pod is held (created, not started) until its item may run: the first one at once, the others once
the survivor has taken them. The victim is killed once the first item's result is decided and its dispatch acked,
so the items delivered again are the batch less its first: a Job made again for them would not be the victim's
(its name derives from its first attempt and its size), and both Jobs' pods would run them.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import nats.js.errors
import pytest

from plait import codec
from plait.client import AsyncClient
from plait.core.dispatch import dispatches_in
from plait.core.events import AttemptFailed, MapItemFailed, MapItemSucceeded
from plait.protocol import subjects
from plait_executor.kubernetes.batches import attempts_of_job
from plait_executor.kubernetes.watching import COMPLETION_INDEX, JOB_NAME_LABEL
from plait_executor.service import consumer_name
from tests import kubernetes_workflows
from tests.faults import harness
from tests.helpers.kube_api import KubernetesApiStandIn, PodHandle
from tests.helpers.kube_api.kubelet import LocalKubelet
from tests.helpers.kube_api.pods import is_finished
from tests.helpers.kube_api.selectors import LabelSelector
from tests.helpers.processes import ServiceProcess
from tests.helpers.reading import events_of
from tests.helpers.states import final_state

pytestmark = pytest.mark.faults

NAMESPACE = "plait-tasks"
CONTEXT = "plait-stand-in"
ITEMS = 5
DEADLINE = 45.0


def write_kubeconfig(path: Path, server: str) -> Path:
    """A kubeconfig whose context ``CONTEXT`` is the stand-in at ``server`` (plain HTTP on loopback, no credentials:
    the stand-in asks for none)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CONTEXT, "cluster": {"server": server}}],
        "users": [{"name": CONTEXT, "user": {}}],
        "contexts": [{"name": CONTEXT, "context": {"cluster": CONTEXT, "user": CONTEXT, "namespace": NAMESPACE}}],
        "current-context": CONTEXT,
    }
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def kubernetes_env(env: dict[str, str], kubeconfig: Path, replica: str) -> dict[str, str]:
    """``plait executor``'s environment for Kubernetes Jobs in the stand-in."""
    return {
        **env,
        "PLAIT_REPLICA": replica,
        "PLAIT_EXECUTOR_BACKEND": "kubernetes",
        "PLAIT_KUBERNETES_NAMESPACE": NAMESPACE,
        "PLAIT_KUBERNETES_IMAGE": "plait:test",
        "PLAIT_KUBERNETES_CONTEXT": CONTEXT,  # named: the in-cluster configuration is not tried
        "KUBECONFIG": str(kubeconfig),
    }


def is_item_of_the_map(obj: dict[str, Any]) -> bool:
    return bool(obj["metadata"].get("annotations", {}).get("plait.dev/node") == "double")


def map_jobs(api: KubernetesApiStandIn) -> dict[str, list[str]]:
    """Every map Job ever stored (deleted ones too): the attempts it runs, by index."""
    found = {}
    for name, job in api.store.ever("jobs", NAMESPACE).items():
        attempts = attempts_of_job(job)
        assert attempts is not None and job["spec"]["completionMode"] == "Indexed", name
        found[name] = attempts
    return found


def item_pods(api: KubernetesApiStandIn) -> list[dict[str, Any]]:
    """The item pods that exist and have not ended."""
    pods = api.store.list("pods", NAMESPACE, LabelSelector(""))
    return [pod for pod in pods if is_item_of_the_map(pod) and not is_finished(pod)]


def attempt_of_pod(api: KubernetesApiStandIn, pod: dict[str, Any]) -> str:
    """The attempt an item pod runs: its Job's attempt at the pod's completion index."""
    metadata = pod["metadata"]
    job = api.store.ever("jobs", NAMESPACE)[metadata["labels"][JOB_NAME_LABEL]]
    attempts = attempts_of_job(job)
    assert attempts is not None, metadata["name"]
    return attempts[int(metadata["annotations"][COMPLETION_INDEX])]


def taken_again(gates: dict[str, anyio.Event]) -> Callable[[dict[str, object]], bool]:
    """The survivor started an attempt of ``gates`` whose gate is still closed."""
    return lambda entry: (
        entry.get("event") == "attempt_started"
        and (attempt := entry.get("attempt")) in gates
        and not gates[str(attempt)].is_set()
    )


async def open_gates_as_taken(survivor: ServiceProcess, gates: dict[str, anyio.Event]) -> None:
    """Let each item's pods run once the survivor has taken its item (delivered again, and started it)."""
    for _ in range(len(gates)):
        wait = partial(survivor.wait_for, taken_again(gates), "an item taken again", DEADLINE)
        entry = await anyio.to_thread.run_sync(wait, abandon_on_cancel=True)
        gates[str(entry["attempt"])].set()


async def messages_carrying(client: AsyncClient, attempts: set[str]) -> int:
    """How many of the dispatch messages stored carry one of ``attempts`` at least (an item may travel alone, or in a
    chunk of several)."""
    info = await client.js.stream_info(subjects.DISPATCH_STREAM)
    count = 0
    for sequence in range(info.state.first_seq, info.state.last_seq + 1):
        try:
            message = await client.js.get_msg(subjects.DISPATCH_STREAM, seq=sequence)
        except nats.js.errors.NotFoundError:
            continue
        carried = dispatches_in(codec.dispatch_record_decoder.decode(message.data or b""))
        count += any(dispatch.attempt_id in attempts for dispatch in carried)
    return count


async def acks_pending(client: AsyncClient, count: int) -> None:
    """Until the executors' consumer waits for the acks of ``count`` dispatches (the server tells no one when that
    changes: it is asked)."""
    consumer = consumer_name("local", "default")
    with anyio.fail_after(DEADLINE):
        while True:
            if (await client.js.consumer_info(subjects.DISPATCH_STREAM, consumer)).num_ack_pending == count:
                return
            await anyio.sleep(0.05)


def logged(process: ServiceProcess, event: str) -> list[dict[str, object]]:
    return [entry for entry in list(process.events) if entry.get("event") == event]


async def test_killing_a_kubernetes_executor_while_its_map_job_runs_the_survivor_adopts_the_job(
    nats_url: str, tmp_path: Path
) -> None:
    report = harness.FaultReport("kubernetes executor killed while its map Job runs (SIGKILL)", executions=1)
    env = harness.service_env(nats_url, PLAIT_CONCURRENCY=str(2 * ITEMS))
    gates: defaultdict[str, anyio.Event] = defaultdict(anyio.Event)  # attempt id -> its pods may run

    async with KubernetesApiStandIn() as api:
        kubelet = LocalKubelet(api, NAMESPACE)

        async def held(pod: PodHandle) -> None:
            await gates[attempt_of_pod(api, pod.manifest)].wait()
            await pod.run(kubelet.container)  # the real task runtime, which reports its attempt itself

        kubelet.take(is_item_of_the_map, held)
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", api.url)
        processes: list[ServiceProcess] = []
        # Every blocking wait on a process is in a thread: this event loop serves the stand-in meanwhile.
        async with kubelet.running():
            with harness.stopped_at_exit(processes):
                processes.append(await harness.in_thread(harness.start_service, "scheduler", env))
                victim_env = kubernetes_env(env, kubeconfig, "victim")
                victim = await harness.in_thread(harness.start_service, "executor", victim_env)
                processes.append(victim)
                async with harness.connected(nats_url) as client:
                    xs = list(range(1, ITEMS + 1))
                    execution_id = (await client.launch(kubernetes_workflows.doubled, {"xs": xs})).id
                    with anyio.fail_after(DEADLINE):  # every item has its pod (held: not started)
                        await api.store.wait_until(lambda: len(item_pods(api)) == ITEMS)
                    made = map_jobs(api)
                    [(job, attempts)] = made.items()
                    assert len(attempts) == ITEMS, made
                    await harness.in_thread(victim.wait_for_event, "job_created")  # logged once it was answered
                    assert len(logged(victim, "job_created")) == 1, "the victim made the map Job"
                    placed = {attempt: (job, index) for index, attempt in enumerate(attempts)}
                    first, *rest = attempts
                    await acks_pending(client, await messages_carrying(client, set(attempts)))  # it holds them all
                    held_for_rest = await messages_carrying(client, set(rest))
                    gates[first].set()
                    [decided] = await events_of(client, execution_id, MapItemSucceeded, 1, timeout=DEADLINE)
                    assert decided.attempt_id == first
                    # The victim settled what it could: the message of the first item, if that travelled alone, is
                    # acked; those of the others stay held (the first item's too, if it shares one of them).
                    await acks_pending(client, held_for_rest)

                    await harness.in_thread(victim.kill)
                    report.faults += 1

                    survivor_env = kubernetes_env(env, kubeconfig, "survivor")
                    survivor = await harness.in_thread(harness.start_service, "executor", survivor_env)
                    processes.append(survivor)
                    async with anyio.create_task_group() as group:
                        group.start_soon(open_gates_as_taken, survivor, {attempt: gates[attempt] for attempt in rest})
                        await harness.wait_all(client, [execution_id], timeout=DEADLINE, report=report)
                        group.cancel_scope.cancel()  # every gate is open by now, unless the execution did not end
                    state = await final_state(client, execution_id, timeout=10)
                    events = [e async for stored in client.events(execution_id) for e in stored.decision.events]
                    report.problems = await harness.audit_log(client)

    assert state.status == "succeeded", state.error
    assert state.outputs == {"result": [2 * x for x in xs]}
    # One Job for the items, the victim's: the survivor made none, and each item's pod ran once.
    assert map_jobs(api) == made, "no second Job for the items"
    assert logged(survivor, "job_created") == [], "the survivor made no Job of its own"
    ever_pods = [pod for pod in api.store.ever("pods", NAMESPACE).values() if is_item_of_the_map(pod)]
    assert len(ever_pods) == ITEMS, [pod["metadata"]["name"] for pod in ever_pods]
    assert sorted(kubelet.ran) == sorted(pod["metadata"]["name"] for pod in ever_pods), "each pod ran once"
    # The survivor did not run the item whose result was decided, and found the others at their indexes.
    assert {entry.get("attempt") for entry in logged(survivor, "attempt_started")} == set(rest)
    adoptions = {
        entry.get("attempt"): (entry.get("job"), entry.get("index")) for entry in logged(survivor, "job_adopted")
    }
    assert adoptions == {attempt: placed[attempt] for attempt in rest}
    # Each item's one attempt ran in the pod of its index, and its result was decided once.
    node = state.nodes["double"]
    attempts_run = list(node.all_attempts())
    assert len(attempts_run) == node.attempt_count == ITEMS
    assert {attempt.attempt_id for attempt in attempts_run} == placed.keys()
    for attempt in attempts_run:
        job, index = placed[attempt.attempt_id]
        assert attempt.worker == f"{job}-{index}", "the pod of its index ran it, and reported it"
    successes = [e for e in events if isinstance(e, MapItemSucceeded) and e.node == "double"]
    assert sorted(e.index for e in successes) == list(range(ITEMS)), "each item decided once"
    assert {e.attempt_id for e in successes} == placed.keys()
    assert not [e for e in events if isinstance(e, AttemptFailed | MapItemFailed)]
    report.check()
