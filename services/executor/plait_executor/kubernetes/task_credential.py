"""The NATS credential of an attempt's pod: its Job's own task grant (``plait_executor.task_grants``), in a Secret
made for that Job alone and owned by it (deleted with it). The Job names only the Secret; the pod reads the grant
from a read-only file (``PLAIT_NATS_TOKEN_FILE``) and connects with it as its token, which the auth callout checks
(``plait_executor.task_callout``)."""

from __future__ import annotations

import base64
from typing import Any

from plait.settings import VARIABLES
from plait_executor.kubernetes.manifests import LABEL_PREFIX, MANAGED_BY_LABELS, TASK_CONTAINER

CREDENTIAL_VOLUME = "plait-nats-credential"
CREDENTIAL_MOUNT = "/var/run/plait/nats-credential"
TOKEN_KEY = "token"  # noqa: S105  the name of the Secret's key, not a token
_SUFFIX = "-nats"


def credential_secret_name(job: str) -> str:
    """The name of Job ``job``'s credential Secret (a Job's name is at most 63 characters, a Secret's 253)."""
    return f"{job}{_SUFFIX}"


def credential_secret(job: dict[str, Any], grant: str) -> dict[str, Any]:
    """The Secret holding ``grant`` for ``job`` (as created: its ``metadata.uid`` names it as the owner, so the
    garbage collector deletes the Secret with the Job)."""
    metadata = job["metadata"]
    labels = {key: value for key, value in metadata.get("labels", {}).items() if key.startswith(LABEL_PREFIX)}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": credential_secret_name(metadata["name"]),
            "labels": {**MANAGED_BY_LABELS, **labels},
            "ownerReferences": [
                {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "name": metadata["name"],
                    "uid": metadata["uid"],
                    "blockOwnerDeletion": False,
                }
            ],
        },
        "type": "Opaque",
        "immutable": True,
        "data": {TOKEN_KEY: base64.b64encode(grant.encode()).decode()},
    }


def with_credential(job: dict[str, Any]) -> dict[str, Any]:
    """``job`` (changed in place, and returned) whose task container reads its token from the Job's credential
    Secret, mounted read-only. The pod waits to start until the Secret exists."""
    pod = job["spec"]["template"]["spec"]
    secret = credential_secret_name(job["metadata"]["name"])
    pod.setdefault("volumes", []).append(
        {
            "name": CREDENTIAL_VOLUME,
            "secret": {"secretName": secret, "defaultMode": 0o440, "items": [{"key": TOKEN_KEY, "path": TOKEN_KEY}]},
        }
    )
    for container in pod["containers"]:
        if container["name"] == TASK_CONTAINER:
            container.setdefault("volumeMounts", []).append(
                {"name": CREDENTIAL_VOLUME, "mountPath": CREDENTIAL_MOUNT, "readOnly": True}
            )
            container.setdefault("env", []).append(
                {"name": VARIABLES["nats_token_file"], "value": f"{CREDENTIAL_MOUNT}/{TOKEN_KEY}"}
            )
    return job
