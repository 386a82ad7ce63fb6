"""An attempt's pod authenticates to NATS with its own Job's task grant: the Job names only the Job's credential
Secret, the pod reads the grant from a read-only file, the Secret is owned by the Job, and the API server accepts
both."""

from __future__ import annotations

import base64

from plait.core.kubernetes_options import KubernetesOptions
from plait_executor.kubernetes.manifests import AttemptIdentity, job_manifest, job_name
from plait_executor.kubernetes.task_credential import (
    CREDENTIAL_MOUNT,
    credential_secret,
    credential_secret_name,
    with_credential,
)
from tests.helpers.kube_api.validation import job_causes, secret_causes

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
GRANT = "plait-grant-v1.e30.c2ln"


def test_the_pod_reads_its_jobs_grant_from_the_jobs_own_secret() -> None:
    job = with_credential(job_manifest(ATTEMPT, KubernetesOptions(image="plait:test")))
    assert job_causes(job) == []
    secret = credential_secret_name(job_name(ATTEMPT.attempt_id))
    pod = job["spec"]["template"]["spec"]
    [volume] = pod["volumes"]
    assert volume["secret"]["secretName"] == secret
    assert volume["secret"]["items"] == [{"key": "token", "path": "token"}]
    [container] = pod["containers"]
    assert {"name": volume["name"], "mountPath": CREDENTIAL_MOUNT, "readOnly": True} in container["volumeMounts"]
    env = {item["name"]: item for item in container["env"]}
    assert env["PLAIT_NATS_TOKEN_FILE"]["value"] == f"{CREDENTIAL_MOUNT}/token"
    assert "PLAIT_NATS_TOKEN" not in env and GRANT not in str(job), "no grant in the Job"


def test_the_secret_holds_the_grant_and_is_owned_by_its_job() -> None:
    job = job_manifest(ATTEMPT, KubernetesOptions(image="plait:test"))
    job["metadata"]["uid"] = "0b9e5f9c-0000-4000-8000-000000000001"  # as created
    secret = credential_secret(job, GRANT)
    assert secret_causes(secret) == []
    assert secret["metadata"]["name"] == credential_secret_name(job["metadata"]["name"])
    assert secret["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "name": job["metadata"]["name"],
            "uid": job["metadata"]["uid"],
            "blockOwnerDeletion": False,
        }
    ]
    assert base64.b64decode(secret["data"]["token"]).decode() == GRANT
    assert secret["immutable"] is True
