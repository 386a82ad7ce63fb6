"""The NATS URL in a Kubernetes Job's pod spec never carries the executor's own credential (a URL's
``nats://user:password@host``): the task's code could read it from its environment, and so could anyone who may read
Jobs or pods. With per-Job grants the credential is removed from the URL; without them an executor whose URL holds
its credential refuses to start until ``PLAIT_KUBERNETES_NATS_URL`` says what the pods connect to."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from structlog.testing import capture_logs

from plait.adapters.nats_auth import carries_credential, without_credential
from plait.errors import InputError
from plait.protocol import nats_jwt
from plait.settings import Settings
from plait_executor.backend import backend_from_settings
from plait_executor.kubernetes.backend import KubernetesTarget, kubernetes_backend
from plait_executor.kubernetes.manifests import job_name
from tests import kubernetes_workflows
from tests.helpers.dispatches import first_attempt
from tests.helpers.kube_api import KubernetesApiStandIn

NAMESPACE = "plait-tasks"
PASSWORD = "executor-s3cret"
EXECUTOR_URL = f"nats://plait-executor:{PASSWORD}@nats.plait.svc:4222"


def kubernetes_settings(**settings: Any) -> Settings:
    return Settings(
        nats_url=EXECUTOR_URL,
        executor_backend="kubernetes",
        kubernetes_image="plait:test",
        kubernetes_namespace=NAMESPACE,
        **settings,
    )


def target_of(settings: Settings) -> KubernetesTarget:
    """The target of the Kubernetes back end ``settings`` make (that of its factory, a ``partial``)."""
    factory: Any = backend_from_settings(settings, 1)
    target: KubernetesTarget = factory.args[0]
    return target


async def test_a_job_given_a_grant_has_the_executors_url_without_its_password(tmp_path: Path) -> None:
    seed = tmp_path / "callout.seed"
    seed.write_bytes(nats_jwt.new_seed() + b"\n")
    target = target_of(kubernetes_settings(nats_callout_seed_file=str(seed)))
    dispatch = first_attempt(kubernetes_workflows.square.spec, {"x": 3})
    name = job_name(dispatch.attempt_id)
    with capture_logs() as logs:
        async with KubernetesApiStandIn() as api, kubernetes_backend(target, api.configuration()) as backend:
            async with anyio.create_task_group() as group:
                group.start_soon(lambda: backend.run(dispatch, on_start=lambda: None))
                with anyio.fail_after(10):
                    job = await api.store.wait_until(lambda: api.store.get("jobs", NAMESPACE, name))
                group.cancel_scope.cancel()
    [container] = job["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["PLAIT_NATS_URL"] == "nats://nats.plait.svc:4222"
    assert PASSWORD not in str(job)
    removed = [entry for entry in logs if entry["event"] == "nats_url_credential_removed"]
    assert len(removed) == 1 and PASSWORD not in str(logs)


def test_an_executor_whose_url_holds_its_credential_and_gives_no_grants_refuses_to_start() -> None:
    with pytest.raises(InputError, match="PLAIT_KUBERNETES_NATS_URL") as refused:
        backend_from_settings(kubernetes_settings(), 1)
    assert PASSWORD not in str(refused.value)


def test_the_pods_own_url_is_used_as_given_without_grants() -> None:
    pods_url = "nats://plait-tasks:tasks-password@nats.plait.svc:4222"
    assert target_of(kubernetes_settings(kubernetes_nats_url=pods_url)).nats_url == pods_url


@pytest.mark.parametrize(
    ("urls", "bare"),
    [
        ("nats://user:secret@nats:4222", "nats://nats:4222"),
        ("tls://token@[::1]:4222, nats://u:p@n2/", "tls://[::1]:4222,nats://n2/"),
        ("user:secret@nats:4222", "nats:4222"),
    ],
)
def test_a_credential_is_removed_from_every_url_of_a_list(urls: str, bare: str) -> None:
    assert carries_credential(urls)
    assert without_credential(urls) == bare
    assert not carries_credential(bare)
