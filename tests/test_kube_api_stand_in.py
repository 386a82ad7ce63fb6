"""The Kubernetes API stand-in, driven through the real kubernetes-asyncio client: what the Kubernetes backend
relies on (status codes, watch semantics, Job status transitions) must be what a real API server does."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import kubernetes_validate
import pytest
from kubernetes_asyncio.client import ApiClient, BatchV1Api, CoreV1Api, V1DeleteOptions
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.watch import Watch

from tests.helpers.kube_api import KubernetesApiStandIn, PodHandle
from tests.helpers.kube_api.validation import KUBERNETES_VERSION

NAMESPACE = "plait-tasks"


@pytest.fixture
async def kube_api() -> AsyncIterator[KubernetesApiStandIn]:
    async with KubernetesApiStandIn() as api:
        yield api


@pytest.fixture
async def api_client(kube_api: KubernetesApiStandIn) -> AsyncIterator[ApiClient]:
    async with ApiClient(kube_api.configuration()) as client:
        yield client


@pytest.fixture
def batch(api_client: ApiClient) -> BatchV1Api:
    return BatchV1Api(api_client)


@pytest.fixture
def core(api_client: ApiClient) -> CoreV1Api:
    return CoreV1Api(api_client)


@pytest.fixture
async def watch() -> AsyncIterator[Callable[..., Watch]]:
    """Opens watches (``watch(api_method, *arguments)``) and closes them after the test."""
    opened: list[Watch] = []

    def stream(method: Callable[..., Any], *arguments: Any, **options: Any) -> Watch:
        opened.append(Watch())
        return opened[-1].stream(method, *arguments, **options)

    yield stream
    for each in opened:
        await each.close()


def job(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {"plait.dev/attempt": name}},
        "spec": {
            "backoffLimit": 0,
            **spec,
            "template": {
                "metadata": {"labels": {"plait.dev/attempt": name}},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "task", "image": "pipeline:1.0"}]},
            },
        },
    }


def conditions(raw_job: dict[str, Any]) -> dict[str, str]:
    return {condition["type"]: condition["reason"] for condition in raw_job["status"].get("conditions", [])}


def job_conditions(kube_api: KubernetesApiStandIn, name: str) -> dict[str, str]:
    found = kube_api.job(NAMESPACE, name)
    assert found is not None
    return conditions(found)


def assert_valid(obj: dict[str, Any]) -> None:
    """What the stand-in sends fits the schema of a real server's objects."""
    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def error_of(raised: pytest.ExceptionInfo[ApiException]) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(raised.value.body)
    return body


async def created_pod(kube_api: KubernetesApiStandIn, batch: BatchV1Api, name: str, **spec: Any) -> PodHandle:
    await batch.create_namespaced_job(NAMESPACE, job(name, **spec))
    [pod] = await kube_api.wait_for_pods(NAMESPACE, name)
    return pod


async def a_resource_version(batch: BatchV1Api) -> str:
    """A resource version other than "0" (which a watch reads as "any"): that of an unrelated Job."""
    await batch.create_namespaced_job("elsewhere", job("unrelated"))
    version: str = (await batch.list_namespaced_job("elsewhere")).metadata.resource_version
    return version


async def until(stream: Watch, stop: Any) -> list[dict[str, Any]]:
    """The events of ``stream`` up to and including the first for which ``stop(event)`` holds."""
    seen = []
    async with asyncio.timeout(10):
        async for event in stream:
            seen.append(event)
            if stop(event):
                return seen
    return seen


class TestJobs:
    async def test_a_created_job_can_be_read_listed_by_label_and_deleted(
        self, kube_api: KubernetesApiStandIn, batch: BatchV1Api
    ) -> None:
        created = await batch.create_namespaced_job(NAMESPACE, job("train-1"))
        await batch.create_namespaced_job(NAMESPACE, job("other"))
        assert created.metadata.uid and int(created.metadata.resource_version) > 0
        assert created.spec.selector.match_labels == {"batch.kubernetes.io/controller-uid": created.metadata.uid}

        read = await batch.read_namespaced_job("train-1", NAMESPACE)
        listed = await batch.list_namespaced_job(NAMESPACE, label_selector="plait.dev/attempt=train-1")
        assert read.metadata.uid == created.metadata.uid
        assert [item.metadata.name for item in listed.items] == ["train-1"]
        assert int(listed.metadata.resource_version) >= int(read.metadata.resource_version)

        deleted = await batch.delete_namespaced_job("train-1", NAMESPACE, propagation_policy="Background")
        assert deleted.status == "Success"
        with pytest.raises(ApiException) as raised:
            await batch.read_namespaced_job("train-1", NAMESPACE)
        assert raised.value.status == 404
        assert error_of(raised)["reason"] == "NotFound"
        assert kube_api.pods(NAMESPACE, "train-1") == []

    async def test_a_second_job_of_the_same_name_gets_409_already_exists(self, batch: BatchV1Api) -> None:
        first = await batch.create_namespaced_job(NAMESPACE, job("train-1"))
        with pytest.raises(ApiException) as raised:
            await batch.create_namespaced_job(NAMESPACE, job("train-1"))
        assert raised.value.status == 409
        assert error_of(raised)["reason"] == "AlreadyExists"
        assert error_of(raised)["message"] == 'jobs.batch "train-1" already exists'
        assert (await batch.read_namespaced_job("train-1", NAMESPACE)).metadata.uid == first.metadata.uid

    @pytest.mark.parametrize(
        ("change", "field"),
        [
            (lambda j: j["spec"].update(backoffLimits=0), "spec"),
            (
                lambda j: j["spec"]["template"]["spec"].update(restartPolicy="Always"),
                "spec.template.spec.restartPolicy",
            ),
            (lambda j: j["metadata"].update(name="Train_1"), "metadata.name"),
            (lambda j: j["metadata"]["labels"].update(node="a/b"), "metadata.labels"),
            (
                lambda j: j["spec"]["template"]["spec"]["containers"][0].update(
                    resources={"requests": {"nvidia.com/gpu": "1"}}
                ),
                "spec.template.spec.containers[0].resources.limits",
            ),
        ],
        ids=["unknown-field", "restart-policy", "name", "label-value", "gpu-without-limit"],
    )
    async def test_an_invalid_job_gets_422_invalid_and_is_not_created(
        self, kube_api: KubernetesApiStandIn, batch: BatchV1Api, change: Any, field: str
    ) -> None:
        manifest = job("train-1")
        change(manifest)
        with pytest.raises(ApiException) as raised:
            await batch.create_namespaced_job(NAMESPACE, manifest)
        assert raised.value.status == 422
        status = error_of(raised)
        assert status["reason"] == "Invalid"
        assert status["details"]["causes"][0]["field"] == field
        assert (await batch.list_namespaced_job(NAMESPACE)).items == []

    async def test_injected_failures_answer_500_then_requests_succeed(
        self, kube_api: KubernetesApiStandIn, batch: BatchV1Api
    ) -> None:
        kube_api.fail_next_requests(2)
        for _ in range(2):
            with pytest.raises(ApiException) as raised:
                await batch.create_namespaced_job(NAMESPACE, job("train-1"))
            assert (raised.value.status, error_of(raised)["reason"]) == (500, "InternalError")
        await batch.create_namespaced_job(NAMESPACE, job("train-1"))

    async def test_deleting_without_a_policy_orphans_the_pods(
        self, kube_api: KubernetesApiStandIn, batch: BatchV1Api, core: CoreV1Api
    ) -> None:
        pod = await created_pod(kube_api, batch, "train-1")
        await batch.delete_namespaced_job("train-1", NAMESPACE)
        orphan = await core.read_namespaced_pod(pod.name, NAMESPACE)
        assert orphan.metadata.owner_references is None

    async def test_a_foreground_deletion_in_the_body_removes_the_pods_before_the_job(
        self, kube_api: KubernetesApiStandIn, batch: BatchV1Api, core: CoreV1Api, watch: Callable[..., Watch]
    ) -> None:
        pod = await created_pod(kube_api, batch, "train-1")
        stream = watch(core.list_namespaced_pod, NAMESPACE, resource_version="1", timeout_seconds=5)
        await batch.delete_namespaced_job("train-1", NAMESPACE, body=V1DeleteOptions(propagation_policy="Foreground"))
        events = await until(stream, lambda event: event["type"] == "DELETED")
        assert [event["type"] for event in events] == ["ADDED", "MODIFIED", "DELETED"]
        assert events[1]["raw_object"]["metadata"]["deletionTimestamp"]
        assert kube_api.job(NAMESPACE, "train-1") is None
        assert pod.name == events[-1]["object"].metadata.name

    async def test_an_unsupported_propagation_policy_is_invalid(self, batch: BatchV1Api) -> None:
        await batch.create_namespaced_job(NAMESPACE, job("train-1"))
        with pytest.raises(ApiException) as raised:
            await batch.delete_namespaced_job("train-1", NAMESPACE, propagation_policy="Eventually")
        assert raised.value.status == 422


class TestJobController:
    async def test_a_job_runs_one_pod_and_completes_when_it_succeeds(
        self, kube_api: KubernetesApiStandIn, batch: BatchV1Api, core: CoreV1Api
    ) -> None:
        pod = await created_pod(kube_api, batch, "train-1")
        assert pod.manifest["metadata"]["labels"]["batch.kubernetes.io/job-name"] == "train-1"
        assert pod.manifest["metadata"]["labels"]["plait.dev/attempt"] == "train-1"
        assert pod.manifest["status"]["phase"] == "Pending"
        assert (await batch.read_namespaced_job("train-1", NAMESPACE)).status.active == 1

        pod.start()
        running = await batch.read_namespaced_job("train-1", NAMESPACE)
        assert (running.status.active, running.status.ready) == (1, 1)

        pod.succeed(log=["loading", "training", "done"])
        done = await batch.read_namespaced_job("train-1", NAMESPACE)
        assert (done.status.active, done.status.succeeded) == (0, 1)
        assert done.status.completion_time is not None
        assert job_conditions(kube_api, "train-1") == {
            "SuccessCriteriaMet": "CompletionsReached",
            "Complete": "CompletionsReached",
        }
        read = await core.read_namespaced_pod(pod.name, NAMESPACE)
        assert read.status.phase == "Succeeded"
        assert read.status.container_statuses[0].state.terminated.reason == "Completed"

    async def test_a_non_zero_exit_fails_the_job_at_backoff_limit_zero(
        self, kube_api: KubernetesApiStandIn, batch: BatchV1Api, core: CoreV1Api
    ) -> None:
        pod = await created_pod(kube_api, batch, "train-1")
        pod.start()
        pod.fail(exit_code=3, log=["Traceback (most recent call last):", "ValueError: bad row 17"])
        failed = kube_api.job(NAMESPACE, "train-1")
        assert failed is not None
        assert (failed["status"]["failed"], failed["status"]["active"]) == (1, 0)
        assert conditions(failed) == {"FailureTarget": "BackoffLimitExceeded", "Failed": "BackoffLimitExceeded"}
        terminated = (await core.read_namespaced_pod(pod.name, NAMESPACE)).status.container_statuses[0].state.terminated
        assert (terminated.exit_code, terminated.reason) == (3, "Error")
        assert await core.read_namespaced_pod_log(pod.name, NAMESPACE, tail_lines=1) == "ValueError: bad row 17\n"

    async def test_a_job_with_retries_left_replaces_its_failed_pod(
        self, kube_api: KubernetesApiStandIn, batch: BatchV1Api
    ) -> None:
        first = await created_pod(kube_api, batch, "train-1", backoffLimit=1)
        first.fail()
        [second] = await kube_api.wait_for_pods(NAMESPACE, "train-1")
        assert second.name != first.name
        second.succeed()
        assert job_conditions(kube_api, "train-1")["Complete"] == "CompletionsReached"

    async def test_an_oom_killed_pod_reports_oomkilled_with_exit_code_137(
        self, kube_api: KubernetesApiStandIn, batch: BatchV1Api, core: CoreV1Api
    ) -> None:
        pod = await created_pod(kube_api, batch, "train-1")
        pod.start()
        pod.oom_kill()
        terminated = (await core.read_namespaced_pod(pod.name, NAMESPACE)).status.container_statuses[0].state.terminated
        assert (terminated.exit_code, terminated.reason) == (137, "OOMKilled")
        assert "Failed" in job_conditions(kube_api, "train-1")

    async def test_an_evicted_pod_fails_with_reason_evicted_and_a_disruption_condition(
        self, kube_api: KubernetesApiStandIn, batch: BatchV1Api, core: CoreV1Api
    ) -> None:
        pod = await created_pod(kube_api, batch, "train-1")
        pod.start()
        pod.evict()
        read = await core.read_namespaced_pod(pod.name, NAMESPACE)
        assert (read.status.phase, read.status.reason) == ("Failed", "Evicted")
        disruption = [c for c in read.status.conditions if c.type == "DisruptionTarget"]
        assert disruption[0].reason == "TerminationByKubelet"
        assert "Failed" in job_conditions(kube_api, "train-1")

    async def test_an_image_that_cannot_be_pulled_keeps_the_pod_pending_until_the_deadline(
        self, kube_api: KubernetesApiStandIn, batch: BatchV1Api, core: CoreV1Api
    ) -> None:
        pod = await created_pod(kube_api, batch, "train-1", activeDeadlineSeconds=600)
        pod.fail_image_pull()
        waiting = (await core.read_namespaced_pod(pod.name, NAMESPACE)).status.container_statuses[0].state.waiting
        assert waiting.reason == "ErrImagePull"
        pod.fail_image_pull()
        read = await core.read_namespaced_pod(pod.name, NAMESPACE)
        assert (read.status.phase, read.status.container_statuses[0].state.waiting.reason) == (
            "Pending",
            "ImagePullBackOff",
        )
        assert (await batch.read_namespaced_job("train-1", NAMESPACE)).status.active == 1
        with pytest.raises(ApiException) as raised:
            await core.read_namespaced_pod_log(pod.name, NAMESPACE)
        assert raised.value.status == 400
        assert "is waiting to start" in error_of(raised)["message"]

        kube_api.expire_deadline(NAMESPACE, "train-1")
        assert job_conditions(kube_api, "train-1")["Failed"] == "DeadlineExceeded"
        assert kube_api.pods(NAMESPACE, "train-1") == []

    async def test_an_indexed_job_runs_one_pod_per_index_parallelism_at_a_time(
        self, kube_api: KubernetesApiStandIn, batch: BatchV1Api
    ) -> None:
        await batch.create_namespaced_job(
            NAMESPACE, job("map-1", completionMode="Indexed", completions=3, parallelism=2)
        )
        first_two = await kube_api.wait_for_pods(NAMESPACE, "map-1", count=2)
        assert sorted(pod.index for pod in first_two) == [0, 1]
        env = first_two[0].manifest["spec"]["containers"][0]["env"]
        assert env[-1]["name"] == "JOB_COMPLETION_INDEX"
        by_index = {pod.index: pod for pod in first_two}
        by_index[0].succeed()
        assert sorted(pod.index for pod in await kube_api.wait_for_pods(NAMESPACE, "map-1", count=2)) == [1, 2]
        status = (kube_api.job(NAMESPACE, "map-1") or {})["status"]
        assert (status["completedIndexes"], status["active"]) == ("0", 2)
        for pod in await kube_api.wait_for_pods(NAMESPACE, "map-1", count=2):
            pod.succeed()
        done = kube_api.job(NAMESPACE, "map-1") or {}
        assert (done["status"]["completedIndexes"], done["status"]["succeeded"]) == ("0-2", 3)
        assert "Complete" in conditions(done)

    async def test_with_a_backoff_limit_per_index_a_failed_index_does_not_stop_the_others(
        self, kube_api: KubernetesApiStandIn, batch: BatchV1Api
    ) -> None:
        manifest = job("map-1", completionMode="Indexed", completions=3, parallelism=3, backoffLimitPerIndex=0)
        del manifest["spec"]["backoffLimit"]
        await batch.create_namespaced_job(NAMESPACE, manifest)
        pods = {pod.index: pod for pod in await kube_api.wait_for_pods(NAMESPACE, "map-1", count=3)}
        pods[1].fail(exit_code=2)
        assert len(await kube_api.wait_for_pods(NAMESPACE, "map-1", count=2)) == 2
        pods[0].succeed()
        pods[2].succeed()
        done = kube_api.job(NAMESPACE, "map-1") or {}
        assert (done["status"]["completedIndexes"], done["status"]["failedIndexes"]) == ("0,2", "1")
        assert conditions(done)["Failed"] == "FailedIndexes"

    async def test_a_pod_deleted_through_the_api_fails_its_index_alone(
        self, kube_api: KubernetesApiStandIn, batch: BatchV1Api, core: CoreV1Api
    ) -> None:
        manifest = job("map-1", completionMode="Indexed", completions=2, parallelism=2, backoffLimitPerIndex=0)
        del manifest["spec"]["backoffLimit"]
        await batch.create_namespaced_job(NAMESPACE, manifest)
        pods = {pod.index: pod for pod in await kube_api.wait_for_pods(NAMESPACE, "map-1", count=2)}
        pods[0].start()
        deleted = await core.delete_namespaced_pod(pods[0].name, NAMESPACE)
        assert deleted.metadata.deletion_timestamp is not None
        assert [pod.index for pod in kube_api.pods(NAMESPACE, "map-1")] == [1], "its index gets no other pod"
        status = (kube_api.job(NAMESPACE, "map-1") or {})["status"]
        assert (status["failedIndexes"], status["failed"], status["active"]) == ("0", 1, 1)
        pods[1].succeed()
        assert conditions(kube_api.job(NAMESPACE, "map-1") or {})["Failed"] == "FailedIndexes"
        with pytest.raises(ApiException) as raised:
            await core.delete_namespaced_pod(pods[0].name, NAMESPACE)
        assert raised.value.status == 404


class TestPodsAndLogs:
    async def test_pods_are_listed_by_label_selector(
        self, kube_api: KubernetesApiStandIn, batch: BatchV1Api, core: CoreV1Api
    ) -> None:
        first = await created_pod(kube_api, batch, "train-1")
        await created_pod(kube_api, batch, "train-2")
        listed = await core.list_namespaced_pod(NAMESPACE, label_selector="plait.dev/attempt in (train-1, train-9)")
        assert [pod.metadata.name for pod in listed.items] == [first.name]
        assert len((await core.list_namespaced_pod(NAMESPACE, label_selector="plait.dev/attempt")).items) == 2
        assert (await core.list_namespaced_pod("elsewhere")).items == []

    async def test_the_log_tail_is_the_last_lines(
        self, kube_api: KubernetesApiStandIn, batch: BatchV1Api, core: CoreV1Api
    ) -> None:
        pod = await created_pod(kube_api, batch, "train-1")
        pod.start()
        pod.log(*(f"line {n}" for n in range(100)))
        assert await core.read_namespaced_pod_log(pod.name, NAMESPACE, tail_lines=3) == "line 97\nline 98\nline 99\n"
        whole = await core.read_namespaced_pod_log(pod.name, NAMESPACE, container="task")
        assert whole.count("\n") == 100

    async def test_a_container_callback_runs_a_local_process_and_its_exit_code_ends_the_pod(
        self, kube_api: KubernetesApiStandIn, batch: BatchV1Api, core: CoreV1Api
    ) -> None:
        pod = await created_pod(kube_api, batch, "train-1")

        async def process(running: PodHandle) -> int:
            script = "import sys; print('hello from', sys.argv[1]); sys.exit(3)"
            child = await asyncio.create_subprocess_exec(
                sys.executable, "-c", script, running.name, stdout=asyncio.subprocess.PIPE
            )
            output, _ = await child.communicate()
            running.log(*output.decode().splitlines())
            return await child.wait()

        assert await pod.run(process) == 3
        assert await core.read_namespaced_pod_log(pod.name, NAMESPACE) == f"hello from {pod.name}\n"
        terminated = (await core.read_namespaced_pod(pod.name, NAMESPACE)).status.container_statuses[0].state.terminated
        assert terminated.exit_code == 3

    async def test_deleting_the_job_cancels_a_running_container_callback(
        self, kube_api: KubernetesApiStandIn, batch: BatchV1Api
    ) -> None:
        pod = await created_pod(kube_api, batch, "train-1")
        cancelled = asyncio.Event()

        async def forever(running: PodHandle) -> int:
            try:
                await asyncio.Event().wait()
            finally:
                cancelled.set()
            return 0

        async with asyncio.TaskGroup() as group:
            run = group.create_task(pod.run(forever))
            await kube_api.store.wait_until(lambda: pod.manifest["status"]["phase"] == "Running")
            await batch.delete_namespaced_job("train-1", NAMESPACE, propagation_policy="Background")
        assert run.result() is None
        assert cancelled.is_set()


class TestWatches:
    async def test_a_watch_sees_every_change_in_order_with_increasing_resource_versions(
        self, kube_api: KubernetesApiStandIn, batch: BatchV1Api, core: CoreV1Api, watch: Callable[..., Watch]
    ) -> None:
        since = await a_resource_version(batch)
        jobs = watch(batch.list_namespaced_job, NAMESPACE, resource_version=since, timeout_seconds=5)
        pods = watch(core.list_namespaced_pod, NAMESPACE, resource_version=since, timeout_seconds=5)
        pod = await created_pod(kube_api, batch, "train-1")
        pod.start()
        pod.succeed()
        job_events = await until(jobs, lambda event: "Complete" in conditions(event["raw_object"]))
        pod_events = await until(pods, lambda event: event["object"].status.phase == "Succeeded")

        assert [event["type"] for event in job_events] == ["ADDED", "MODIFIED", "MODIFIED", "MODIFIED"]
        assert [e["object"].status.active for e in job_events] == [None, 1, 1, 0]
        assert [event["type"] for event in pod_events] == ["ADDED", "MODIFIED", "MODIFIED"]
        assert [e["object"].status.phase for e in pod_events] == ["Pending", "Running", "Succeeded"]
        versions = sorted(int(e["object"].metadata.resource_version) for e in job_events + pod_events)
        assert len(set(versions)) == len(versions) == kube_api.store.version - int(since)
        for event in job_events + pod_events:
            assert_valid(event["raw_object"])

    async def test_a_watch_from_nothing_starts_with_the_current_objects(
        self, kube_api: KubernetesApiStandIn, batch: BatchV1Api, watch: Callable[..., Watch]
    ) -> None:
        await batch.create_namespaced_job(NAMESPACE, job("train-1"))
        await batch.create_namespaced_job(NAMESPACE, job("train-2"))
        stream = watch(batch.list_namespaced_job, NAMESPACE, label_selector="plait.dev/attempt=train-2")
        [event] = await until(stream, lambda event: True)
        assert (event["type"], event["object"].metadata.name) == ("ADDED", "train-2")
        assert event["object"].status.active == 1

    async def test_a_dropped_watch_resumes_by_itself_without_losing_or_repeating_events(
        self, kube_api: KubernetesApiStandIn, batch: BatchV1Api, core: CoreV1Api, watch: Callable[..., Watch]
    ) -> None:
        """kubernetes-asyncio reconnects a watch without ``timeout_seconds`` from the last resource version."""
        since = await a_resource_version(batch)
        stream = watch(core.list_namespaced_pod, NAMESPACE, resource_version=since)
        pod = await created_pod(kube_api, batch, "train-1")
        [added] = await until(stream, lambda event: True)
        assert kube_api.drop_watches() == 1
        pod.start()  # while no watch is open
        pod.succeed()
        rest = await until(stream, lambda event: event["object"].status.phase == "Succeeded")
        phases = [event["object"].status.phase for event in [added, *rest]]
        assert phases == ["Pending", "Running", "Succeeded"]

    @pytest.mark.parametrize("abort_connection", [False, True], ids=["closed", "connection-lost"])
    async def test_a_watch_ended_by_the_server_resumes_from_its_last_resource_version(
        self,
        kube_api: KubernetesApiStandIn,
        batch: BatchV1Api,
        core: CoreV1Api,
        abort_connection: bool,
        watch: Callable[..., Watch],
    ) -> None:
        since = await a_resource_version(batch)
        stream = watch(core.list_namespaced_pod, NAMESPACE, resource_version=since, timeout_seconds=30)
        pod = await created_pod(kube_api, batch, "train-1")
        seen = await until(stream, lambda event: True)
        pod.start()
        seen += await until(stream, lambda event: True)
        kube_api.drop_watches(abort_connection=abort_connection)
        if abort_connection:
            with pytest.raises(aiohttp.ClientPayloadError):
                await until(stream, lambda event: False)
        else:
            assert await until(stream, lambda event: False) == []
        pod.succeed()  # missed by the ended watch
        resumed = watch(
            core.list_namespaced_pod, NAMESPACE, resource_version=stream.resource_version, timeout_seconds=30
        )
        seen += await until(resumed, lambda event: event["object"].status.phase == "Succeeded")
        versions = [int(event["object"].metadata.resource_version) for event in seen]
        assert [event["object"].status.phase for event in seen] == ["Pending", "Running", "Succeeded"]
        assert versions == sorted(set(versions))

    async def test_a_watch_from_a_compacted_resource_version_gets_410_expired(
        self, kube_api: KubernetesApiStandIn, batch: BatchV1Api, watch: Callable[..., Watch]
    ) -> None:
        await batch.create_namespaced_job(NAMESPACE, job("train-1"))
        old = (await batch.list_namespaced_job(NAMESPACE)).metadata.resource_version
        await batch.create_namespaced_job(NAMESPACE, job("train-2"))
        kube_api.compact()
        stream = watch(batch.list_namespaced_job, NAMESPACE, resource_version=old, timeout_seconds=5)
        with pytest.raises(ApiException) as raised:
            await until(stream, lambda event: True)
        assert raised.value.status == 410
        assert "Expired: too old resource version" in str(raised.value.reason)

        current = (await batch.list_namespaced_job(NAMESPACE)).metadata.resource_version
        fresh = watch(batch.list_namespaced_job, NAMESPACE, resource_version=current, timeout_seconds=5)
        await batch.create_namespaced_job(NAMESPACE, job("train-3"))
        [event] = await until(fresh, lambda event: True)
        assert (event["type"], event["object"].metadata.name) == ("ADDED", "train-3")

    async def test_a_watch_from_a_resource_version_that_is_no_number_gets_400(
        self, batch: BatchV1Api, watch: Callable[..., Watch]
    ) -> None:
        stream = watch(batch.list_namespaced_job, NAMESPACE, resource_version="latest", timeout_seconds=5)
        with pytest.raises(ApiException) as raised:
            await until(stream, lambda event: True)
        assert raised.value.status == 400

    async def test_a_watch_with_a_server_timeout_ends_when_it_expires(
        self, kube_api: KubernetesApiStandIn, batch: BatchV1Api, watch: Callable[..., Watch]
    ) -> None:
        stream = watch(batch.list_namespaced_job, NAMESPACE, resource_version="1", timeout_seconds=1)
        assert await until(stream, lambda event: False) == []
