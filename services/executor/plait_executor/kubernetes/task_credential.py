"""The NATS credential of an attempt's pod: a Kubernetes Secret of the attempt's project and domain (its keys
``user`` and ``password``), for a user of that project's tasks in the broker's configuration (tenants.conf,
``<project>-<domain>-tasks``), which may report that project's attempts and use the object store buckets, and
nothing else. Only the Secret's name is in the Job; the pod reads the user into ``PLAIT_NATS_USER`` and the password
from a file (``PLAIT_NATS_PASSWORD_FILE``), as every plait process does."""

from __future__ import annotations

from typing import Any

from plait.settings import VARIABLES
from plait_executor.kubernetes.manifests import TASK_CONTAINER

CREDENTIAL_VOLUME = "plait-nats-credential"
CREDENTIAL_MOUNT = "/var/run/plait/nats-credential"


def credential_secret(template: str, project: str, domain: str) -> str:
    """The Secret's name: ``template`` with ``{project}`` and ``{domain}`` filled in, lowercased, with '_' and '.'
    written '-' (a Secret's name is a DNS subdomain)."""

    def name_part(value: str) -> str:
        return value.lower().replace("_", "-").replace(".", "-")

    return template.format(project=name_part(project), domain=name_part(domain))


def with_credential(job: dict[str, Any], secret: str) -> dict[str, Any]:
    """``job`` (changed in place, and returned) whose task container authenticates with the Secret ``secret``;
    unchanged when ``secret`` is empty (the pods then connect as the URL says)."""
    if not secret:
        return job
    pod = job["spec"]["template"]["spec"]
    pod.setdefault("volumes", []).append(
        {
            "name": CREDENTIAL_VOLUME,
            "secret": {"secretName": secret, "defaultMode": 0o440, "items": [{"key": "password", "path": "password"}]},
        }
    )
    for container in pod["containers"]:
        if container["name"] == TASK_CONTAINER:
            container.setdefault("volumeMounts", []).append(
                {"name": CREDENTIAL_VOLUME, "mountPath": CREDENTIAL_MOUNT, "readOnly": True}
            )
            container.setdefault("env", []).extend(
                [
                    {
                        "name": VARIABLES["nats_user"],
                        "valueFrom": {"secretKeyRef": {"name": secret, "key": "user"}},
                    },
                    {"name": VARIABLES["nats_password_file"], "value": f"{CREDENTIAL_MOUNT}/password"},
                ]
            )
    return job
