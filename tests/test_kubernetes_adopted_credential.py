"""An executor that adopts a Job after a restart gives it its credential Secret, in case the executor that created
the Job died before making it (the Job's pods wait for that Secret to start): a one-attempt Job, and a map Job
adopted through its ``plait.dev/attempts`` annotation, whose grant then names every item attempt of the Job."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import anyio
from kubernetes_asyncio.client import ApiClient, BatchV1Api

from plait.core.dispatch import Dispatch
from plait.core.ids import attempt_id, item_attempt_id
from plait.protocol import nats_jwt
from plait_executor.kubernetes.backend import KubernetesTarget, kubernetes_backend
from plait_executor.kubernetes.task_credential import TOKEN_KEY, credential_secret_name
from plait_executor.task_grants import TaskGrant, verify
from tests import kubernetes_workflows
from tests.helpers.kube_api import KubernetesApiStandIn

NAMESPACE = "plait-tasks"
EXECUTION = "01kbmw3c2v5q8x7y9z0a1b2c3d"


def item(index: int) -> Dispatch:
    return Dispatch(
        execution_id=EXECUTION,
        project="analytics",
        domain="production",
        node="double",
        attempt_id=item_attempt_id(EXECUTION, "double", index, 1),
        attempt=1,
        task=kubernetes_workflows.double.spec,
        inputs={"x": index},
        decision_sequence=10 + index,
    )


def single() -> Dispatch:
    return Dispatch(
        execution_id=EXECUTION,
        project="analytics",
        domain="production",
        node="square",
        attempt_id=attempt_id(EXECUTION, "square", 1),
        attempt=1,
        task=kubernetes_workflows.square.spec,
        inputs={"x": 3},
        decision_sequence=5,
    )


def credentialed_target(seed_file: Path) -> KubernetesTarget:
    seed_file.write_bytes(nats_jwt.new_seed() + b"\n")
    return KubernetesTarget(
        cluster="local",
        queue="default",
        namespace=NAMESPACE,
        image="plait:test",
        nats_url="nats://127.0.0.1:4222",
        callout_seed_file=str(seed_file),
        map_batch_seconds=0.1,
    )


async def secret_of_adopted_job(target: KubernetesTarget, manifest_of: Any, redelivered: Dispatch) -> dict[str, Any]:
    """The first executor created the Job ``manifest_of(backend)`` and died before its Secret; a restarted one is
    redelivered ``redelivered``, an attempt of that Job: the Secret it makes."""
    async with KubernetesApiStandIn() as api:
        async with kubernetes_backend(target, api.configuration()) as first:
            manifest = manifest_of(first)
        async with ApiClient(api.configuration()) as client:
            await BatchV1Api(client).create_namespaced_job(NAMESPACE, manifest)
        secret = credential_secret_name(manifest["metadata"]["name"])
        async with kubernetes_backend(target, api.configuration()) as second, anyio.create_task_group() as group:
            group.start_soon(lambda: second.run(redelivered, on_start=lambda: None))
            with anyio.fail_after(10):
                made: dict[str, Any] = await api.store.wait_until(lambda: api.store.get("secrets", NAMESPACE, secret))
            group.cancel_scope.cancel()
    return made


def grant_in(secret: dict[str, Any], seed_file: Path) -> TaskGrant:
    token = base64.b64decode(secret["data"][TOKEN_KEY]).decode()
    return verify(token, nats_jwt.read_account_key(str(seed_file), "PLAIT_NATS_CALLOUT_SEED_FILE"), time.time())


async def test_an_adopted_one_attempt_job_gets_its_credential_secret(tmp_path: Path) -> None:
    seed = tmp_path / "callout.seed"
    secret = await secret_of_adopted_job(credentialed_target(seed), lambda b: b.manifest(single()), single())
    assert grant_in(secret, seed).attempts == (single().attempt_id,)


async def test_an_adopted_map_job_gets_a_credential_secret_naming_all_its_items(tmp_path: Path) -> None:
    seed = tmp_path / "callout.seed"
    items = [item(0), item(1), item(2)]
    secret = await secret_of_adopted_job(credentialed_target(seed), lambda b: b.map_manifest(items), item(1))
    grant = grant_in(secret, seed)
    assert grant.attempts == tuple(dispatch.attempt_id for dispatch in items)
    assert grant.map_job
