"""The Kubernetes back end on a real cluster (kind, k3s...): opt-in, skipped unless ``PLAIT_E2E_KUBECONFIG`` and
``PLAIT_E2E_NATS_URL`` are set. See docs/kubernetes.md, *Testing on a real cluster*.

It runs what ``test_the_real_cluster_scenario_runs_on_the_stand_in`` (tests/test_kubernetes_backend.py) runs on the
API stand-in, with the same code (tests/helpers/kube_scenarios.py): only the API server (a kubeconfig instead of
the stand-in) and the NATS URL the pods connect to differ. Scheduler, catalog and executor run in this process.

- ``PLAIT_E2E_KUBECONFIG``: the kubeconfig file of the cluster (its current context, or ``PLAIT_E2E_CONTEXT``);
- ``PLAIT_E2E_NATS_URL``: a nats-server (2.12 or later, JetStream on) this process reaches;
- ``PLAIT_E2E_POD_NATS_URL``: the same server as the pods reach it (default: ``PLAIT_E2E_NATS_URL``);
- ``PLAIT_E2E_IMAGE``: an image with plait installed, that the cluster's nodes have (default ``plait:e2e``);
- ``PLAIT_E2E_NAMESPACE``: where the Jobs go, made if missing (default ``plait-e2e``).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from kubernetes_asyncio import config
from kubernetes_asyncio.client import ApiClient, Configuration, CoreV1Api
from kubernetes_asyncio.client.exceptions import ApiException

from plait_catalog import CatalogService
from plait_executor.kubernetes.backend import KubernetesTarget
from plait_scheduler import SchedulerService
from tests.helpers.kube_scenarios import run_map_flow
from tests.helpers.running import running

KUBECONFIG = os.environ.get("PLAIT_E2E_KUBECONFIG", "")
NATS_URL = os.environ.get("PLAIT_E2E_NATS_URL", "")
DEADLINE = 300.0  # pulling an image and starting pods take a while on a real cluster

pytestmark = pytest.mark.skipif(
    not (KUBECONFIG and NATS_URL),
    reason="a real-cluster test: set PLAIT_E2E_KUBECONFIG (a kind or k3s cluster) and PLAIT_E2E_NATS_URL (a "
    "nats-server its pods reach, see docs/kubernetes.md, 'Testing on a real cluster')",
)


async def cluster_configuration() -> Configuration:
    configuration = Configuration()
    context = os.environ.get("PLAIT_E2E_CONTEXT") or None
    await config.load_kube_config(config_file=KUBECONFIG, context=context, client_configuration=configuration)
    return configuration


async def ensure_namespace(configuration: Configuration, namespace: str) -> None:
    async with ApiClient(configuration) as client:
        try:
            await CoreV1Api(client).create_namespace({"metadata": {"name": namespace}})  # type: ignore[arg-type]
        except ApiException as exc:
            if exc.status != 409:
                raise


async def test_a_workflow_with_a_map_runs_on_a_real_cluster(database_url: str, tmp_path: Path) -> None:
    configuration = await cluster_configuration()
    namespace = os.environ.get("PLAIT_E2E_NAMESPACE", "plait-e2e")
    await ensure_namespace(configuration, namespace)
    target = KubernetesTarget(
        cluster=f"e2e-{uuid.uuid4().hex[:8]}",  # its own dispatch subject and Job labels on a shared NATS
        queue="default",
        namespace=namespace,
        image=os.environ.get("PLAIT_E2E_IMAGE", "plait:e2e"),
        nats_url=os.environ.get("PLAIT_E2E_POD_NATS_URL") or NATS_URL,
    )
    scheduler = SchedulerService(NATS_URL, replica="e2e-scheduler")
    catalog = CatalogService(NATS_URL, database_url, replica="e2e-catalog")
    async with running(scheduler.run, catalog.run):
        state, [backend] = await run_map_flow(NATS_URL, target, configuration, tmp_path, items=12, timeout=DEADLINE)
    map_jobs = {attempt.worker.rsplit("-", 1)[0] for attempt in state.nodes["square"].all_attempts()}
    assert backend.created == 2 + len(map_jobs)
