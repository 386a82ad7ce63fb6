"""The Kubernetes back end gives each Job its own NATS credential: a task grant in a Secret owned by the Job, which
the pod's runtime connects with and the executors' auth callout checks. End to end against a real nats-server with
the shipped tenants.conf (auth callout on), the scheduler, the catalog, and the Kubernetes API stand-in whose kubelet
runs the real task runtime with the Secret's file."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from plait.client import AsyncClient
from plait.core.values import DEFAULT_INLINE_VALUE_LIMIT
from plait.protocol import nats_jwt, subjects
from plait_catalog import CatalogService
from plait_executor.kubernetes.backend import KubernetesTarget
from plait_executor.kubernetes.batching import WINDOW_SECONDS
from plait_executor.kubernetes.manifests import job_name
from plait_executor.kubernetes.task_credential import CREDENTIAL_MOUNT, credential_secret_name
from plait_executor.task_grants import verify
from plait_scheduler import SchedulerService
from tests import kubernetes_workflows
from tests.helpers.kube_api import KubernetesApiStandIn
from tests.helpers.kube_api.kubelet import LocalKubelet
from tests.helpers.kube_api.selectors import LabelSelector
from tests.helpers.kube_scenarios import kubernetes_executor, run_map_flow
from tests.helpers.running import ServiceRun, running
from tests.helpers.secured_nats import SecuredNats, make_streams_as_operator, secured_nats
from tests.helpers.states import final_state

NAMESPACE = "plait-tasks"
DEADLINE = 60.0


@pytest.fixture
async def secured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[SecuredNats]:
    """The secured server with its streams; this process's services connect as plait-services."""
    with secured_nats(tmp_path, monkeypatch) as server:
        await make_streams_as_operator(server)
        services = server.auth("plait-services")
        monkeypatch.setenv("PLAIT_NATS_USER", services.user)
        monkeypatch.setenv("PLAIT_NATS_PASSWORD_FILE", services.password_file)
        yield server


def credentialed_target(secured: SecuredNats, map_batch_seconds: float = WINDOW_SECONDS) -> KubernetesTarget:
    """The stand-in cluster, whose Jobs get a grant signed with the callout's key."""
    return KubernetesTarget(
        cluster="local",
        queue="default",
        namespace=NAMESPACE,
        image="plait:test",
        nats_url=secured.url,
        callout_seed_file=secured.callout_seed_file,
        map_batch_seconds=map_batch_seconds,
    )


def services(secured: SecuredNats, database_url: str, api: KubernetesApiStandIn) -> list[ServiceRun]:
    """The scheduler, the catalog and an executor of the stand-in cluster whose Jobs get grants."""
    executor = kubernetes_executor(secured.url, credentialed_target(secured), api.configuration(), "k8s-executor", [])
    scheduler = SchedulerService(secured.url, replica="secured-scheduler")
    catalog = CatalogService(secured.url, database_url, replica="secured-catalog")
    return [scheduler.run, catalog.run, executor.run]


async def test_each_job_runs_with_its_own_grant_from_a_secret_it_owns(secured: SecuredNats, database_url: str) -> None:
    async with KubernetesApiStandIn() as api:
        kubelet = LocalKubelet(api, NAMESPACE)
        async with kubelet.running(), running(*services(secured, database_url, api)):
            operator = secured.auth("plait-operator")  # reads the whole history back: see test_task_credential
            async with await AsyncClient.connect(secured.url, "alpha", "development", auth=operator) as client:
                handle = await client.launch(kubernetes_workflows.sum_of_squares, {"x": 3, "y": 4})
                state = await final_state(client, handle.id, timeout=DEADLINE)
            secrets: dict[str, dict[str, Any]] = api.store.ever("secrets", NAMESPACE)
            jobs = {job["metadata"]["name"]: job for job in api.store.list("jobs", NAMESPACE, LabelSelector(""))}
            for name in list(jobs):
                api.delete_job(NAMESPACE, name)
            left = api.store.list("secrets", NAMESPACE, LabelSelector(""))
            pod_logs = "\n".join(line for pod in kubelet.ran for line in api.logs(NAMESPACE, pod))
    assert state.status == "succeeded" and state.outputs == {"result": 25}
    assert len(kubelet.ran) == 3, "every attempt ran in a pod"
    key = nats_jwt.read_account_key(secured.callout_seed_file, "callout seed")
    for node_id, node in state.nodes.items():
        [attempt] = node.attempts
        assert attempt.worker.startswith("plait-"), "the pod's runtime reported the attempt with its grant"
        job = jobs[job_name(attempt.attempt_id)]
        secret = secrets[credential_secret_name(job["metadata"]["name"])]
        [owner] = secret["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["uid"]) == ("Job", job["metadata"]["uid"])
        grant = verify(base64.b64decode(secret["data"]["token"]).decode(), key, time.time())
        assert (grant.execution_id, grant.node, grant.attempts) == (handle.id, node_id, (attempt.attempt_id,))
        [container] = job["spec"]["template"]["spec"]["containers"]
        env = {item["name"]: item.get("value") for item in container["env"]}
        assert env["PLAIT_NATS_TOKEN_FILE"] == f"{CREDENTIAL_MOUNT}/token"
        assert not any(grant_text in str(job) for grant_text in [secret["data"]["token"]]), "no grant in the Job"
    assert left == [], "each credential Secret is deleted with its Job"
    assert "attempt_succeeded" in pod_logs and "violation" not in pod_logs.lower(), "the grant allows all it does"


async def test_a_fast_registered_map_runs_with_each_map_jobs_grant(
    secured: SecuredNats, database_url: str, tmp_path: Path
) -> None:
    """Each pod of a map Job reads its code bundle, its inputs and reports its item with the Job's grant, which
    names the batch's item attempts."""
    target = credentialed_target(secured, map_batch_seconds=0.2)
    async with KubernetesApiStandIn() as api:
        kubelet = LocalKubelet(api, NAMESPACE)
        scheduler = SchedulerService(secured.url, replica="secured-scheduler")
        catalog = CatalogService(secured.url, database_url, replica="secured-catalog")
        async with kubelet.running(), running(scheduler.run, catalog.run):
            state, _ = await run_map_flow(secured.url, target, api.configuration(), tmp_path, 6, DEADLINE)
        secrets = api.store.ever("secrets", NAMESPACE)
    key = nats_jwt.read_account_key(secured.callout_seed_file, "callout seed")
    granted = [verify(base64.b64decode(s["data"]["token"]).decode(), key, time.time()) for s in secrets.values()]
    items = {attempt.attempt_id for attempt in state.nodes["square"].all_attempts()}
    assert len(items) == state.nodes["square"].map_size > 1
    assert items <= {attempt for grant in granted for attempt in grant.attempts}
    assert any(len(grant.attempts) > 1 for grant in granted), "a map Job's grant names its batch"
    assert all(grant.map_job == (grant.node == "square") for grant in granted), "map pods report on their node's scope"


async def test_a_value_too_large_for_an_event_goes_through_the_object_store_with_each_pods_grant(
    secured: SecuredNats, database_url: str
) -> None:
    """One pod stores its large output in the values bucket with its grant; the next pod reads it with its own."""
    size = 4 * DEFAULT_INLINE_VALUE_LIMIT
    async with KubernetesApiStandIn() as api:
        kubelet = LocalKubelet(api, NAMESPACE)
        operator = secured.auth("plait-operator")
        async with kubelet.running(), running(*services(secured, database_url, api)):
            async with await AsyncClient.connect(secured.url, "alpha", "development", auth=operator) as client:
                values = f"OBJ_{subjects.VALUES_BUCKET}"
                before = (await client.js.stream_info(values)).state.messages
                handle = await client.launch(kubernetes_workflows.large_value, {"size": size})
                state = await final_state(client, handle.id, timeout=DEADLINE)
                stored = (await client.js.stream_info(values)).state.messages - before
            pod_logs = "\n".join(line for pod in kubelet.ran for line in api.logs(NAMESPACE, pod))
    assert state.status == "succeeded" and state.outputs == {"result": size}
    assert len(kubelet.ran) == 2 and stored >= 2, "the value went to the bucket (its chunks and its record)"
    assert "violation" not in pod_logs.lower(), "each pod's grant allows the bucket's writes and reads"
