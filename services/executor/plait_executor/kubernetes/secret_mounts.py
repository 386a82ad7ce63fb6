"""A task's secrets in its attempt's pod: each Kubernetes Secret it names (its key ``value``) mounted read-only as
the file ``<name>`` of one projected volume, whose folder the task runtime finds in ``PLAIT_SECRETS_DIR`` (see
``plait.sdk.secrets``). Only the names are in the Job: the cluster holds the values, and the pod reads only the
Secrets its task declared."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from plait.sdk.secrets import DIR_VARIABLE, KUBERNETES_KEY
from plait_executor.kubernetes.manifests import TASK_CONTAINER

SECRETS_VOLUME = "plait-secrets"
SECRETS_MOUNT = "/var/run/plait/secrets"


def with_secrets(job: dict[str, Any], names: Sequence[str]) -> dict[str, Any]:
    """``job`` (changed in place, and returned) with ``names`` mounted in its task container; unchanged without."""
    if not names:
        return job
    pod = job["spec"]["template"]["spec"]
    pod.setdefault("volumes", []).append(
        {
            "name": SECRETS_VOLUME,
            "projected": {
                "defaultMode": 0o440,
                "sources": [
                    {"secret": {"name": name, "items": [{"key": KUBERNETES_KEY, "path": name}]}} for name in names
                ],
            },
        }
    )
    for container in pod["containers"]:
        if container["name"] == TASK_CONTAINER:
            container.setdefault("volumeMounts", []).append(
                {"name": SECRETS_VOLUME, "mountPath": SECRETS_MOUNT, "readOnly": True}
            )
            container.setdefault("env", []).append({"name": DIR_VARIABLE, "value": SECRETS_MOUNT})
    return job
