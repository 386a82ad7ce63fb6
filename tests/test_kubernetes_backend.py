"""The Kubernetes backend end to end: real NATS, scheduler, catalog and executor, the real kubernetes-asyncio
client against the Kubernetes API stand-in, and pods whose container runs the real task runtime as a local
process (tests/helpers/kube_api/kubelet.py)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
from nats.aio.msg import Msg

from plait.client import AsyncClient
from plait.core.dispatch import Dispatch
from plait.core.events import AttemptStopped
from plait.core.values import as_ref
from plait_catalog import CatalogService
from plait_executor import ExecutorService, runner
from plait_executor.kubernetes.backend import KubernetesBackend, KubernetesTarget, kubernetes_backend
from plait_executor.kubernetes.batches import attempts_of_job
from plait_executor.kubernetes.manifests import job_name
from plait_executor.kubernetes.verdicts import job_state
from plait_executor.kubernetes.watching import COMPLETION_INDEX
from plait_executor.slots import AttemptSlots
from plait_scheduler import SchedulerService
from tests import kubernetes_workflows, large_value_workflows, output_workflows
from tests.helpers.code_bundle_sources import write_flow
from tests.helpers.kube_api import KubernetesApiStandIn, PodHandle
from tests.helpers.kube_api.kubelet import LocalKubelet
from tests.helpers.kube_scenarios import kubernetes_executor, run_map_flow
from tests.helpers.reading import first_event
from tests.helpers.running import Running, running
from tests.helpers.states import final_state

NAMESPACE = "plait-tasks"
DEADLINE = 60.0


class Cluster:
    """The stand-in, its local kubelet, and the Kubernetes backends the executors made (in order)."""

    def __init__(self, api: KubernetesApiStandIn, kubelet: LocalKubelet, nats_url: str) -> None:
        self.api, self.kubelet, self.nats_url = api, kubelet, nats_url
        self.backends: list[KubernetesBackend] = []
        self.target = KubernetesTarget(
            cluster="local",
            queue="default",
            namespace=NAMESPACE,
            image="plait:test",
            nats_url=nats_url,
            image_pull_grace_seconds=0.5,
        )

    def executor(self, replica: str, concurrency: int | None = None) -> ExecutorService:
        configuration = self.api.configuration()
        return kubernetes_executor(self.nats_url, self.target, configuration, replica, self.backends, concurrency)

    def jobs(self) -> list[dict[str, Any]]:
        return [job for job in self.api.store.list("jobs", NAMESPACE, _everything())]

    async def job_of(self, node: str) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            return next((job for job in self.jobs() if _node_of(job) == node), None)

        job: dict[str, Any] = await self.api.store.wait_until(found)
        return job


def _everything() -> Any:
    from tests.helpers.kube_api.selectors import LabelSelector

    return LabelSelector("")


def _node_of(obj: dict[str, Any]) -> str:
    return str(obj["metadata"]["annotations"]["plait.dev/node"])


def node_is(node: str) -> Callable[[dict[str, Any]], bool]:
    return lambda pod: _node_of(pod) == node


@pytest.fixture
async def cluster(nats_url: str, database_url: str) -> AsyncIterator[Cluster]:
    async with KubernetesApiStandIn() as api:
        kubelet = LocalKubelet(api, NAMESPACE)
        async with kubelet.running():
            scheduler = SchedulerService(nats_url, replica="test-scheduler")
            catalog = CatalogService(nats_url, database_url, replica="test-catalog")
            async with running(scheduler.run, catalog.run):
                yield Cluster(api, kubelet, nats_url)


@contextlib.asynccontextmanager
async def client_of(cluster: Cluster) -> AsyncIterator[AsyncClient]:
    async with await AsyncClient.connect(cluster.nats_url) as client:
        yield client


async def test_a_workflow_runs_end_to_end_as_jobs(cluster: Cluster) -> None:
    async with running(cluster.executor("k8s-executor").run), client_of(cluster) as client:
        handle = await client.launch(kubernetes_workflows.sum_of_squares, {"x": 3, "y": 4})
        state = await final_state(client, handle.id, timeout=DEADLINE)
    assert state.status == "succeeded" and state.outputs == {"result": 25}
    # Every Job ever made (their TTL may remove them; the next test shows the last one is not deleted early).
    jobs = list(cluster.api.store.ever("jobs", NAMESPACE).values())
    assert len(jobs) == 3 and len(cluster.kubelet.ran) == 3
    for node in state.nodes.values():
        [attempt] = node.attempts
        assert job_name(attempt.attempt_id) in {job["metadata"]["name"] for job in jobs}
        assert attempt.worker.startswith("plait-"), "the pod's runtime reported the attempt"
    square = next(job for job in jobs if _node_of(job).startswith("square"))
    [container] = square["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "plait:test"
    assert container["resources"]["limits"] == {"memory": "256Mi"}
    assert container["command"][:3] == ["python", "-m", "plait_executor.kubernetes.runtime"]
    assert cluster.backends[0].created == 3


async def test_the_job_whose_pod_ended_the_execution_is_left_to_complete_and_keeps_its_log(cluster: Cluster) -> None:
    released = anyio.Event()

    async def container_then_linger(pod: PodHandle) -> int:
        exit_code = await cluster.kubelet.container(pod)  # the real runtime: it reports the attempt's result
        await released.wait()  # exited, but the Job is not complete yet
        return exit_code

    async def lingering(pod: PodHandle) -> None:
        await pod.run(container_then_linger)

    cluster.kubelet.take(node_is("total"), lingering)
    executor = cluster.executor("k8s-executor")
    async with running(executor.run), client_of(cluster) as client:
        handle = await client.launch(kubernetes_workflows.sum_of_squares, {"x": 3, "y": 4})
        state = await final_state(client, handle.id, timeout=DEADLINE)
        [attempt] = state.nodes["total"].attempts
        name = job_name(attempt.attempt_id)
        seen = executor.counts()["execution_checks"]
        with anyio.fail_after(DEADLINE):  # it looks at the ended execution twice more while the Job runs
            while executor.counts()["execution_checks"] < seen + 2 and cluster.api.job(NAMESPACE, name):  # noqa: ASYNC110
                await anyio.sleep(0.05)
        assert cluster.api.job(NAMESPACE, name) is not None, "the Job of the attempt that ended it was deleted"
        released.set()
        with anyio.fail_after(DEADLINE):
            complete = await cluster.api.store.wait_until(lambda: _complete(cluster.api.job(NAMESPACE, name)))
    assert state.status == "succeeded" and state.outputs == {"result": 25}
    assert job_state(complete) == "complete"
    [pod] = cluster.api.pods(NAMESPACE, name)
    assert cluster.api.logs(NAMESPACE, pod.name), "its pod's log is kept with it"


async def test_a_job_whose_pod_reported_but_does_not_exit_is_deleted_after_the_grace(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner, "FINISHING_SECONDS", 0.5)
    pod_gone = anyio.Event()

    async def container_then_hang(pod: PodHandle) -> int:
        await cluster.kubelet.container(pod)  # reports the attempt's result, and exits
        await anyio.sleep_forever()  # as a pod kept alive by a process the task left behind
        return 0

    async def hanging(pod: PodHandle) -> None:
        await pod.run(container_then_hang)
        pod_gone.set()

    cluster.kubelet.take(node_is("total"), hanging)
    async with running(cluster.executor("k8s-executor").run), client_of(cluster) as client:
        handle = await client.launch(kubernetes_workflows.sum_of_squares, {"x": 3, "y": 4})
        state = await final_state(client, handle.id, timeout=DEADLINE)
        with anyio.fail_after(DEADLINE):
            await pod_gone.wait()
        [attempt] = state.nodes["total"].attempts
        assert cluster.api.job(NAMESPACE, job_name(attempt.attempt_id)) is None
        after = await final_state(client, handle.id, timeout=DEADLINE)
    assert state.status == "succeeded" and after.decisions == state.decisions, "its attempt had ended: no stop"


def _complete(job: dict[str, Any] | None) -> dict[str, Any] | None:
    return job if job is not None and job_state(job) == "complete" else None


async def test_a_failing_task_is_a_user_failure_retried(cluster: Cluster, tmp_path: Path) -> None:
    async with running(cluster.executor("k8s-executor").run), client_of(cluster) as client:
        handle = await client.launch(kubernetes_workflows.retried, {"directory": str(tmp_path)})
        state = await final_state(client, handle.id, timeout=DEADLINE)
    assert state.status == "succeeded" and state.outputs == {"result": "second try"}
    first, second = state.nodes["fails_once"].attempts
    assert first.error is not None and first.error.kind == "user" and first.error.message == "first try fails"
    assert second.error is None
    # Each attempt ran as its own Job.
    assert {job_name(first.attempt_id), job_name(second.attempt_id)} <= cluster.api.store.ever("jobs", NAMESPACE).keys()


async def test_an_oom_killed_pod_is_a_system_failure_with_its_log_tail(cluster: Cluster) -> None:
    async def oom_killed(pod: PodHandle) -> None:
        pod.start()
        pod.log("allocating 10 GiB", "still allocating")
        pod.oom_kill()

    cluster.kubelet.take(node_is("hungry"), oom_killed)
    async with running(cluster.executor("k8s-executor").run), client_of(cluster) as client:
        handle = await client.launch(kubernetes_workflows.eats_memory, {"size": 10})
        state = await final_state(client, handle.id, timeout=DEADLINE)
    assert state.status == "failed"
    [attempt] = state.nodes["hungry"].attempts
    assert attempt.error is not None
    assert (attempt.error.kind, attempt.error.error_type) == ("system", "OOMKilled")
    assert "ran out of memory" in attempt.error.message
    assert "allocating 10 GiB\nstill allocating" in attempt.error.traceback


async def test_a_restarted_executor_adopts_the_running_job(cluster: Cluster) -> None:
    release, ended = anyio.Event(), anyio.Event()
    ran: list[int | None] = []

    async def held(pod: PodHandle) -> None:
        await release.wait()
        ran.append(await pod.run(cluster.kubelet.container))
        ended.set()

    cluster.kubelet.take(node_is("slow"), held)
    async with client_of(cluster) as client:
        first = await Running(cluster.executor("k8s-executor-1").run).start()
        handle = await client.launch(kubernetes_workflows.one_slow, {"x": 1})
        job = await cluster.job_of("slow")
        await cluster.api.wait_for_pods(NAMESPACE, job["metadata"]["name"])
        await first.stop()
        async with running(cluster.executor("k8s-executor-2").run):
            release.set()
            state = await final_state(client, handle.id, timeout=DEADLINE)
            await ended.wait()
    assert state.status == "succeeded" and state.outputs == {"result": 2}
    # One Job, whose container ran once (its exit code may be lost: the Job is deleted once the execution ended).
    assert len(cluster.api.store.ever("jobs", NAMESPACE)) == 1 and len(ran) == 1
    first_backend, second_backend = cluster.backends
    assert (first_backend.created, second_backend.created, second_backend.adopted) == (1, 0, 1)


async def test_an_abort_deletes_the_running_job_and_its_pods_and_the_log_records_it(cluster: Cluster) -> None:
    container_ended: list[int | None] = []
    pod_gone = anyio.Event()

    async def forever(pod: PodHandle) -> int:
        await anyio.sleep_forever()
        return 0

    async def held(pod: PodHandle) -> None:
        container_ended.append(await pod.run(forever))
        pod_gone.set()

    cluster.kubelet.take(node_is("slow"), held)
    async with running(cluster.executor("k8s-executor").run), client_of(cluster) as client:
        handle = await client.launch(kubernetes_workflows.one_slow, {"x": 1})
        job = await cluster.job_of("slow")
        await cluster.api.wait_for_pods(NAMESPACE, job["metadata"]["name"])
        await client.abort(handle.id, "not needed", aborted_by="ann@test")
        stopped = await first_event(client, handle.id, AttemptStopped, DEADLINE)
        with anyio.fail_after(DEADLINE):
            await pod_gone.wait()
    assert stopped.reason == f"its Kubernetes Job {job['metadata']['name']} was deleted"
    assert container_ended == [None], "its pod was deleted while it ran"
    assert cluster.jobs() == []
    # deleted in the background with its Job, not orphaned
    assert list(cluster.api.store.list("pods", NAMESPACE, _everything())) == []


async def test_a_lost_pod_is_reported_through_a_dropped_watch_and_410(cluster: Cluster) -> None:
    async def lost_while_unwatched(pod: PodHandle) -> None:
        pod.start()
        pod.log("working")
        await cluster.api.store.wait_until(lambda: cluster.api.store._watchers)
        # One step, with no await: the executor's watches end, the pod is OOMKilled, the history is compacted;
        # resuming from its last version gets 410 Gone, and only a new list shows the pod's end.
        cluster.api.drop_watches()
        pod.oom_kill()
        cluster.api.compact()

    cluster.kubelet.take(node_is("hungry"), lost_while_unwatched)
    async with running(cluster.executor("k8s-executor").run), client_of(cluster) as client:
        handle = await client.launch(kubernetes_workflows.eats_memory, {"size": 10})
        state = await final_state(client, handle.id, timeout=DEADLINE)
    [attempt] = state.nodes["hungry"].attempts
    assert attempt.error is not None and attempt.error.error_type == "OOMKilled"
    assert "working" in attempt.error.traceback


async def test_an_image_that_cannot_be_pulled_fails_the_attempt_after_a_grace_period(cluster: Cluster) -> None:
    async def cannot_pull(pod: PodHandle) -> None:
        pod.fail_image_pull()

    cluster.kubelet.take(node_is("slow"), cannot_pull)
    async with running(cluster.executor("k8s-executor").run), client_of(cluster) as client:
        handle = await client.launch(kubernetes_workflows.one_slow, {"x": 1})
        state = await final_state(client, handle.id, timeout=DEADLINE)
    [attempt] = state.nodes["slow"].attempts
    assert attempt.error is not None and attempt.error.error_type == "ErrImagePull"
    assert cluster.jobs() == [], "the Job was deleted"


def dispatch_of_attempt(attempt_id: str) -> Dispatch:
    spec = kubernetes_workflows.slow.spec
    return Dispatch(
        execution_id="e1",
        project="p",
        domain="d",
        node="slow",
        attempt_id=attempt_id,
        attempt=1,
        task=spec,
        inputs={"x": 1},
        decision_sequence=1,
    )


async def test_two_executors_never_both_start_a_job_for_one_attempt(nats_url: str) -> None:
    target = KubernetesTarget(cluster="c", queue="default", namespace=NAMESPACE, image="plait:test", nats_url=nats_url)
    dispatch = dispatch_of_attempt("e1/slow/1")
    async with KubernetesApiStandIn() as api:
        async with (
            kubernetes_backend(target, api.configuration()) as one,
            kubernetes_backend(target, api.configuration()) as two,
        ):
            outcomes: list[Any] = []

            async def run(backend: KubernetesBackend) -> None:
                outcomes.append(await backend.run(dispatch, on_start=lambda: None))

            async with anyio.create_task_group() as group:
                group.start_soon(run, one)
                group.start_soon(run, two)
                [pod] = await api.wait_for_pods(NAMESPACE, job_name(dispatch.attempt_id))
                pod.succeed()
            assert outcomes == [None, None], "the runtime reported: nothing for the executors to report"
            assert (one.created + two.created, one.adopted + two.adopted) == (1, 1)


async def test_a_pod_stores_a_large_output_and_the_next_pod_reads_it(cluster: Cluster) -> None:
    """The task runtime in the pod stores a 2 MB output in the values bucket and reports a reference; the reading
    task's runtime downloads it (the same code path as local workers)."""
    async with running(cluster.executor("k8s-executor").run), client_of(cluster) as client:
        handle = await client.launch(large_value_workflows.pass_bytes, {"size": 2_000_000})
        state = await final_state(client, handle.id, timeout=DEADLINE)
    assert state.status == "succeeded" and state.outputs == {"result": 2_000_000}
    stored = as_ref(state.node_outputs["big_bytes"]["result"])
    assert stored is not None and stored.size > 2_000_000
    assert all(attempt.worker.startswith("plait-") for node in state.nodes.values() for attempt in node.all_attempts())


async def test_a_pods_output_is_captured_and_read_back(cluster: Cluster) -> None:
    async with running(cluster.executor("k8s-executor").run), client_of(cluster) as client:
        chatty = await client.launch(output_workflows.chatty_flow, {"tag": "pod"})
        chatty_state = await final_state(client, chatty.id, timeout=DEADLINE)
        breaks = await client.launch(output_workflows.breaks_flow, {"steps": 3})
        breaks_state = await final_state(client, breaks.id, timeout=DEADLINE)
        text = await client.logs(chatty.id)
        failed = await client.logs(breaks.id, "breaks")
    assert chatty_state.status == "succeeded"
    lines = text.splitlines()
    assert lines[0] == "== chatty (attempt 1) =="
    for expected in ("stdout pod", "stderr pod", "subprocess pod", "fd pod"):
        assert expected in lines, (expected, text)
    assert any("logged pod" in line for line in lines), text
    assert breaks_state.status == "failed" and breaks_state.error is not None
    assert breaks_state.error.output_tail == "step 0 done\nstep 1 done\nstep 2 done"
    assert "step 2 done" in failed


async def test_a_pods_output_is_followed_while_it_runs(cluster: Cluster, tmp_path: Path) -> None:
    flag = tmp_path / "flag"
    async with running(cluster.executor("k8s-executor").run), client_of(cluster) as client:
        handle = await client.launch(output_workflows.waits_for_flow, {"path": str(flag)})
        chunks = []
        with anyio.fail_after(DEADLINE):
            async for chunk in client.follow_logs(handle.id):
                chunks.append(chunk)
                if "waiting" in chunk.text:
                    flag.touch()  # the task ends only now: "waiting" came from the running pod
        state = await final_state(client, handle.id, timeout=DEADLINE)
    assert state.status == "succeeded"
    assert all(chunk.live for chunk in chunks) and chunks[-1].ended
    assert "".join(chunk.text for chunk in chunks) == "waiting\nreleased\n"


async def test_a_pod_runs_its_task_from_the_code_bundle_after_the_source_is_gone(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Fast registration: the pod's runtime downloads the workflow's bundle from the code bucket and imports the
    task from it, though the file it was registered from no longer exists anywhere."""
    folder = tmp_path / "gone"
    flow = write_flow(folder, f"pod_bundled_{uuid.uuid4().hex[:12]}", factor=6)
    async with running(cluster.executor("k8s-executor").run), client_of(cluster) as client:
        version = await client.register(flow, fast=True)
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()
        handle = await client.launch(flow.name, {"x": 7}, version=version)
        state = await final_state(client, handle.id, timeout=DEADLINE)
    assert state.status == "succeeded" and state.outputs == {"result": "42"}
    [attempt] = [attempt for node in state.nodes.values() for attempt in node.all_attempts()]
    assert attempt.worker.startswith("plait-"), "the pod's runtime ran it"


def map_jobs(cluster: Cluster) -> dict[str, list[str]]:
    """Every map Job ever stored (deleted ones too): the attempts it ran, by index."""
    found = {}
    for name, job in cluster.api.store.ever("jobs", NAMESPACE).items():
        attempts = attempts_of_job(job)
        assert attempts is not None and job["spec"]["completionMode"] == "Indexed", name
        assert job["spec"]["completions"] == job["spec"]["parallelism"] == len(attempts)
        assert job["spec"]["backoffLimitPerIndex"] == 0
        found[name] = attempts
    return found


def index_of_attempts(jobs: dict[str, list[str]]) -> dict[str, tuple[str, int]]:
    placed = {attempt: (name, index) for name, attempts in jobs.items() for index, attempt in enumerate(attempts)}
    assert len(placed) == sum(len(attempts) for attempts in jobs.values()), "no attempt ran in two Jobs"
    return placed


async def test_a_map_runs_as_few_indexed_jobs_one_pod_per_item(cluster: Cluster) -> None:
    items = 50
    async with running(cluster.executor("k8s-executor", concurrency=items).run), client_of(cluster) as client:
        handle = await client.launch(kubernetes_workflows.doubled, {"xs": list(range(items))})
        state = await final_state(client, handle.id, timeout=DEADLINE)
    assert state.status == "succeeded" and state.outputs == {"result": [2 * x for x in range(items)]}
    jobs = map_jobs(cluster)
    placed = index_of_attempts(jobs)
    node = state.nodes["double"]
    attempts = list(node.all_attempts())
    assert len(attempts) == node.attempt_count == items
    assert set(placed) == {attempt.attempt_id for attempt in attempts}
    for attempt in attempts:
        job, index = placed[attempt.attempt_id]
        assert attempt.worker == f"{job}-{index}", "the pod of its index ran it, and reported it"
    assert len(jobs) <= items // 3, f"{len(jobs)} Jobs for {items} items"
    assert max(len(attempts) for attempts in jobs.values()) == 10, "the first wave is one Job"
    assert cluster.backends[0].created == len(jobs)


async def test_map_items_delivered_again_while_they_wait_for_their_job_each_run_at_one_index(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The executor's word that it is still at work on its dispatches is held back until the server has given up
    on it (ack wait: 1 s) and delivered one again, while the first deliveries wait in their batch's window (3 s):
    a redelivered item joins no batch a second time, and every attempt runs at one index of one Job."""
    cluster.target = msgspec.structs.replace(cluster.target, map_batch_seconds=3.0)
    delivered_again = anyio.Event()
    deliveries: list[int] = []
    read, keep_in_progress = runner.AttemptRunner.read, runner.AttemptRunner.keep_in_progress

    def counted_read(self: runner.AttemptRunner, msg: Msg, slots: AttemptSlots) -> runner.Read:
        deliveries.append(msg.metadata.num_delivered)
        if msg.metadata.num_delivered > 1:
            delivered_again.set()
        return read(self, msg, slots)

    async def silent_until_delivered_again(self: runner.AttemptRunner) -> None:
        await delivered_again.wait()
        await keep_in_progress(self)

    monkeypatch.setattr(runner.AttemptRunner, "read", counted_read)
    monkeypatch.setattr(runner.AttemptRunner, "keep_in_progress", silent_until_delivered_again)
    items = 20
    async with running(cluster.executor("k8s-executor", concurrency=items).run), client_of(cluster) as client:
        handle = await client.launch(kubernetes_workflows.doubled, {"xs": list(range(items))})
        state = await final_state(client, handle.id, timeout=DEADLINE)
    assert state.status == "succeeded" and state.outputs == {"result": [2 * x for x in range(items)]}
    assert deliveries.count(2) >= 1, "the fault was injected: a dispatch was delivered again"
    placed = index_of_attempts(map_jobs(cluster))
    attempts = list(state.nodes["double"].all_attempts())
    assert len(attempts) == items and set(placed) == {attempt.attempt_id for attempt in attempts}


async def test_map_items_that_fail_are_retried_in_new_jobs(cluster: Cluster, tmp_path: Path) -> None:
    items = 20
    async with running(cluster.executor("k8s-executor", concurrency=items).run), client_of(cluster) as client:
        inputs = {"xs": list(range(items)), "directory": str(tmp_path)}
        handle = await client.launch(kubernetes_workflows.flaky_map, inputs)
        state = await final_state(client, handle.id, timeout=DEADLINE)
    assert state.status == "succeeded"
    assert state.outputs == {"result": [None if x == 7 else x + 100 for x in range(items)]}
    node = state.nodes["flaky_item"]
    retried = [x for x in range(items) if x % 4 == 0 or x == 7]
    attempts = list(node.all_attempts())
    assert len(attempts) == node.attempt_count == items + len(retried)
    placed = index_of_attempts(map_jobs(cluster))
    for x in retried:
        first, second = [attempt for attempt in attempts if attempt.index == x]
        assert first.error is not None and first.error.kind == "user" and first.error.message == f"item {x} fails"
        assert placed[first.attempt_id][0] != placed[second.attempt_id][0], "a retry runs in a new Job"
    assert node.item_attempts[7].status == "failed"


async def test_an_oom_killed_item_pod_is_a_system_failure_of_that_item_only(cluster: Cluster) -> None:
    async def oom_killed(pod: PodHandle) -> None:
        pod.start()
        pod.log("allocating", "still allocating")
        pod.oom_kill()

    def third_item(pod: dict[str, Any]) -> bool:
        return _node_of(pod) == "hungry_item" and pod["metadata"]["annotations"][COMPLETION_INDEX] == "2"

    cluster.kubelet.take(third_item, oom_killed)
    async with running(cluster.executor("k8s-executor", concurrency=10).run), client_of(cluster) as client:
        handle = await client.launch(kubernetes_workflows.hungry_map, {"sizes": [10, 20, 30, 40]})
        state = await final_state(client, handle.id, timeout=DEADLINE)
    assert state.status == "succeeded"
    [job] = map_jobs(cluster).values()
    node = state.nodes["hungry_item"]
    assert len(job) == 4, "one Job for the four items"
    assert state.outputs == {"result": [10, 20, None, 40]}
    oom = node.item_attempts[2]
    assert oom.error is not None and oom.attempt_id == job[2]
    assert (oom.error.kind, oom.error.error_type) == ("system", "OOMKilled")
    assert "allocating\nstill allocating" in oom.error.traceback
    assert all(attempt.error is None for attempt in node.all_attempts() if attempt.index != 2)


async def test_a_restarted_executor_adopts_the_map_job_of_its_items(cluster: Cluster) -> None:
    release = anyio.Event()

    async def held(pod: PodHandle) -> None:
        await release.wait()
        await pod.run(cluster.kubelet.container)

    cluster.kubelet.take(node_is("double"), held)
    async with client_of(cluster) as client:
        first = await Running(cluster.executor("k8s-executor-1", concurrency=10).run).start()
        handle = await client.launch(kubernetes_workflows.doubled, {"xs": [1, 2, 3]})
        job = await cluster.job_of("double")
        await cluster.api.wait_for_pods(NAMESPACE, job["metadata"]["name"], 3)
        await first.stop()
        async with running(cluster.executor("k8s-executor-2", concurrency=10).run):
            release.set()
            state = await final_state(client, handle.id, timeout=DEADLINE)
    assert state.status == "succeeded" and state.outputs == {"result": [2, 4, 6]}
    assert list(map_jobs(cluster)) == [job["metadata"]["name"]] and len(cluster.kubelet.ran) == 3
    first_backend, second_backend = cluster.backends
    assert (first_backend.created, second_backend.created, second_backend.adopted) == (1, 0, 3)


async def test_an_abort_deletes_the_pods_of_a_map_job_then_the_job(cluster: Cluster) -> None:
    async def forever(pod: PodHandle) -> int:
        await anyio.sleep_forever()
        return 0

    async def held(pod: PodHandle) -> None:
        await pod.run(forever)

    cluster.kubelet.take(node_is("double"), held)
    async with running(cluster.executor("k8s-executor", concurrency=10).run), client_of(cluster) as client:
        handle = await client.launch(kubernetes_workflows.doubled, {"xs": [1, 2, 3]})
        job = await cluster.job_of("double")
        await cluster.api.wait_for_pods(NAMESPACE, job["metadata"]["name"], 3)
        await client.abort(handle.id, "not needed", aborted_by="ann@test")
        stopped = await first_event(client, handle.id, AttemptStopped, DEADLINE)
        with anyio.fail_after(DEADLINE):
            await cluster.api.store.wait_until(lambda: not cluster.jobs())
    assert stopped.reason.startswith("its pod of Kubernetes Job") or stopped.reason.startswith("its Kubernetes Job")
    assert list(cluster.api.store.list("pods", NAMESPACE, _everything())) == []


async def test_the_real_cluster_scenario_runs_on_the_stand_in(cluster: Cluster, tmp_path: Path) -> None:
    """What tests/test_kubernetes_real_cluster.py runs on a real cluster, with the same code: a fast registered
    workflow of three nodes, the middle one a map."""
    state, [backend] = await run_map_flow(
        cluster.nats_url, cluster.target, cluster.api.configuration(), tmp_path, items=12, timeout=DEADLINE
    )
    map_jobs_seen = {attempt.worker.rsplit("-", 1)[0] for attempt in state.nodes["square"].all_attempts()}
    assert backend.created == len(cluster.api.store.ever("jobs", NAMESPACE)) == 2 + len(map_jobs_seen)


async def test_a_timed_out_item_loses_its_pod_and_the_other_items_go_on(cluster: Cluster) -> None:
    """The scheduler fails item 1 at its timeout; the executor deletes that item's pod alone (its index fails), while
    item 2, whose pod has not started yet, still runs in the same Job."""
    release = anyio.Event()

    def index_of(pod: dict[str, Any]) -> str:
        return str(pod["metadata"]["annotations"].get(COMPLETION_INDEX))

    async def held(pod: PodHandle) -> None:
        await release.wait()
        await pod.run(cluster.kubelet.container)

    cluster.kubelet.take(lambda pod: _node_of(pod) == "waits" and index_of(pod) == "2", held)
    async with running(cluster.executor("k8s-executor", concurrency=10).run), client_of(cluster) as client:
        handle = await client.launch(kubernetes_workflows.one_item_times_out, {"xs": [0, 1, 2]})
        job = (await cluster.job_of("waits"))["metadata"]["name"]

        def item_1_failed_alone() -> bool:
            status = (cluster.api.job(NAMESPACE, job) or {}).get("status", {})
            pods = {index_of(pod.manifest) for pod in cluster.api.pods(NAMESPACE, job)}
            return status.get("failedIndexes") == "1" and "1" not in pods and "2" in pods

        with anyio.fail_after(DEADLINE):
            await cluster.api.store.wait_until(item_1_failed_alone)
        release.set()
        state = await final_state(client, handle.id, timeout=DEADLINE)
    assert state.status == "succeeded" and state.outputs == {"result": [0, None, 2]}
    timed_out = state.nodes["waits"].item_attempts[1]
    assert timed_out.error is not None and timed_out.error.error_type == "TaskTimedOut"
    assert len(map_jobs(cluster)) == 1
