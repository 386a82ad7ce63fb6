"""An attempt's pod authenticates to NATS as its project's tasks: the Job names the project's Secret, the pod reads
the user from it and the password from a read-only file, and the API server accepts the manifest."""

from __future__ import annotations

from plait.core.kubernetes_options import KubernetesOptions
from plait_executor.kubernetes.manifests import AttemptIdentity, job_manifest
from plait_executor.kubernetes.task_credential import CREDENTIAL_MOUNT, credential_secret, with_credential
from tests.helpers.kube_api.validation import job_causes

ATTEMPT = AttemptIdentity(
    project="Team_A.ml",
    domain="production",
    execution_id="e1",
    node="load",
    attempt_id="e1/load/1",
    attempt=1,
    queue="default",
    cluster="local",
)


def test_the_pod_reads_its_projects_task_credential_from_a_secret() -> None:
    secret = credential_secret("plait-tasks-{project}-{domain}", ATTEMPT.project, ATTEMPT.domain)
    job = with_credential(job_manifest(ATTEMPT, KubernetesOptions(image="plait:test")), secret)
    assert secret == "plait-tasks-team-a-ml-production"
    assert job_causes(job) == []
    pod = job["spec"]["template"]["spec"]
    [volume] = pod["volumes"]
    assert volume["secret"]["secretName"] == secret and volume["secret"]["items"] == [
        {"key": "password", "path": "password"}
    ]
    [container] = pod["containers"]
    assert {"name": volume["name"], "mountPath": CREDENTIAL_MOUNT, "readOnly": True} in container["volumeMounts"]
    env = {item["name"]: item for item in container["env"]}
    assert env["PLAIT_NATS_USER"]["valueFrom"] == {"secretKeyRef": {"name": secret, "key": "user"}}
    assert env["PLAIT_NATS_PASSWORD_FILE"]["value"] == f"{CREDENTIAL_MOUNT}/password"
    assert "PLAIT_NATS_PASSWORD" not in env, "no password in the Job"


def test_without_a_secret_the_job_is_unchanged() -> None:
    job = job_manifest(ATTEMPT, KubernetesOptions(image="plait:test"))
    assert with_credential(job_manifest(ATTEMPT, KubernetesOptions(image="plait:test")), "") == job
