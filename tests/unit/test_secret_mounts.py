"""A task's Kubernetes Secrets mounted in its attempt's Job: names only, read-only, in the task container alone, and
a manifest the API server accepts."""

from __future__ import annotations

from plait.core.kubernetes_options import KubernetesOptions
from plait.sdk.secrets import DIR_VARIABLE
from plait_executor.kubernetes.manifests import AttemptIdentity, job_manifest, map_job_manifest
from plait_executor.kubernetes.secret_mounts import SECRETS_MOUNT, with_secrets
from tests.helpers.kube_api.validation import job_causes

ATTEMPT = AttemptIdentity(
    project="proj",
    domain="dev",
    execution_id="e1",
    node="load",
    attempt_id="e1/load/1",
    attempt=1,
    queue="default",
    cluster="local",
)
OPTIONS = KubernetesOptions(image="plait:test", env={"MODE": "fast"})
SIDECAR = {"spec": {"containers": [{"name": "log-shipper", "image": "fluent/fluent-bit:3.0"}]}}


def test_each_secret_is_one_read_only_file_of_a_projected_volume_the_api_server_accepts() -> None:
    job = with_secrets(job_manifest(ATTEMPT, OPTIONS), ["warehouse-password", "api.token"])
    assert job_causes(job) == []
    pod = job["spec"]["template"]["spec"]
    [volume] = pod["volumes"]
    assert [source["secret"] for source in volume["projected"]["sources"]] == [
        {"name": "warehouse-password", "items": [{"key": "value", "path": "warehouse-password"}]},
        {"name": "api.token", "items": [{"key": "value", "path": "api.token"}]},
    ]
    [container] = pod["containers"]
    assert container["volumeMounts"] == [{"name": volume["name"], "mountPath": SECRETS_MOUNT, "readOnly": True}]
    assert {"name": DIR_VARIABLE, "value": SECRETS_MOUNT} in container["env"]
    assert {"name": "MODE", "value": "fast"} in container["env"], "the task's own variables are kept"


def test_only_the_task_container_gets_the_secrets_and_a_map_job_too() -> None:
    options = KubernetesOptions(image="plait:test", pod_template=SIDECAR)
    job = with_secrets(map_job_manifest(ATTEMPT, options, ["e1/load[0]/1", "e1/load[1]/1"]), ["warehouse-password"])
    assert job_causes(job) == []
    containers = {container["name"]: container for container in job["spec"]["template"]["spec"]["containers"]}
    assert "volumeMounts" in containers["task"]
    assert "volumeMounts" not in containers["log-shipper"] and "env" not in containers["log-shipper"]


def test_a_task_without_secrets_has_no_volume() -> None:
    assert with_secrets(job_manifest(ATTEMPT, OPTIONS), []) == job_manifest(ATTEMPT, OPTIONS)
