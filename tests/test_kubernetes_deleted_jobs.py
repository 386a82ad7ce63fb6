"""What the Kubernetes back end keeps of deleted Jobs: the deletion of a Job an attempt follows, until that follow
ends (the attempt then fails as ``JobDeleted``), and the names of the last few others (a map Job may be deleted
between its creation and the follows of its items). Every finished Job is deleted by its TTL, so keeping more would
make a long-running executor's memory grow with history rather than with what runs."""

from __future__ import annotations

import anyio
from kubernetes_asyncio.client import ApiClient, BatchV1Api

from plait_executor.attempt import AttemptOutcome
from plait_executor.kubernetes.backend import KubernetesBackend, KubernetesTarget, kubernetes_backend
from plait_executor.kubernetes.manifests import job_name
from plait_executor.kubernetes.watching import RECENT_DELETIONS, ClusterView
from tests import kubernetes_workflows
from tests.helpers.dispatches import first_attempt
from tests.helpers.kube_api import KubernetesApiStandIn

NAMESPACE = "plait-tasks"
TARGET = KubernetesTarget(
    cluster="local", queue="default", namespace=NAMESPACE, image="plait:test", nats_url="nats://127.0.0.1:4222"
)


async def until_no_job(view: ClusterView) -> None:
    with anyio.fail_after(10):
        while view.jobs:
            await view.changed.wait()


async def create_jobs(api: KubernetesApiStandIn, backend: KubernetesBackend, count: int) -> list[str]:
    """``count`` Jobs of attempts no executor runs: their names."""
    names = []
    async with ApiClient(api.configuration()) as client:
        for _ in range(count):
            manifest = backend.manifest(first_attempt(kubernetes_workflows.square.spec, {"x": 1}))
            await BatchV1Api(client).create_namespaced_job(NAMESPACE, manifest)  # type: ignore[arg-type]
            names.append(manifest["metadata"]["name"])
    return names


async def test_the_names_of_deleted_jobs_no_attempt_follows_are_bounded() -> None:
    jobs = 3 * RECENT_DELETIONS
    async with KubernetesApiStandIn() as api, kubernetes_backend(TARGET, api.configuration()) as backend:
        names = await create_jobs(api, backend, jobs)
        for name in names:  # finished long ago: the TTL controller deletes them
            api.delete_job(NAMESPACE, name)
        await until_no_job(backend.view)
        assert not backend.view.deleted
        assert list(backend.view.recently_deleted) == names[-RECENT_DELETIONS:]


async def test_a_followed_job_deleted_among_many_fails_its_attempt_and_is_then_forgotten() -> None:
    dispatch = first_attempt(kubernetes_workflows.square.spec, {"x": 3})
    name = job_name(dispatch.attempt_id)
    outcomes: list[AttemptOutcome | None] = []
    async with KubernetesApiStandIn() as api, kubernetes_backend(TARGET, api.configuration()) as backend:
        others = await create_jobs(api, backend, 2 * RECENT_DELETIONS)

        async def run_attempt() -> None:
            outcomes.append(await backend.run(dispatch, on_start=lambda: None))

        with anyio.fail_after(20):
            async with anyio.create_task_group() as group:
                group.start_soon(run_attempt)
                await api.store.wait_until(lambda: api.store.get("jobs", NAMESPACE, name))
                for deleted in [name, *others]:  # at once: more than the recent deletions kept
                    api.delete_job(NAMESPACE, deleted)
        [outcome] = outcomes
        assert outcome is not None and outcome.error is not None
        assert outcome.error.error_type == "JobDeleted"
        assert not backend.view.deleted, "kept only while followed"
