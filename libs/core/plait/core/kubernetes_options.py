"""How a task's attempts run as Kubernetes Jobs: part of its registered spec (``@task(image=..., requests=...)``)."""

from __future__ import annotations

from typing import Any, Literal

import msgspec


class Toleration(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A pod toleration, in Kubernetes' terms."""

    key: str | None = None
    operator: Literal["Equal", "Exists"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None

    def as_manifest(self) -> dict[str, Any]:
        fields = {
            "key": self.key,
            "operator": self.operator,
            "value": self.value,
            "effect": self.effect,
            "tolerationSeconds": self.toleration_seconds,
        }
        return {name: value for name, value in fields.items() if value is not None}


class KubernetesOptions(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How a task's attempts run as Kubernetes Jobs.

    ``image`` None: the executor's default image (``PLAIT_KUBERNETES_IMAGE``). ``requests`` and ``limits`` are
    Kubernetes quantities (``"500m"``, ``"1Gi"``, ``1``). An extended resource such as ``nvidia.com/gpu`` cannot
    be overcommitted, so naming it in either gives it in both. ``pod_template`` is a partial pod template
    (``{"metadata": ..., "spec": ...}``, Kubernetes field names) under the Job's: pod-level fields and sidecars are
    kept, its unnamed or ``task`` container merges into the task's, and what these options set wins.
    """

    image: str | None = None
    requests: dict[str, str | int] = msgspec.field(default_factory=dict)
    limits: dict[str, str | int] = msgspec.field(default_factory=dict)
    node_selector: dict[str, str] = msgspec.field(default_factory=dict)
    tolerations: tuple[Toleration, ...] = ()
    service_account: str | None = None
    pod_template: dict[str, Any] | None = None
    env: dict[str, str] = msgspec.field(default_factory=dict)
    ttl_seconds_after_finished: int = 3600


KUBERNETES_TASK_OPTIONS = (
    "image",
    "requests",
    "limits",
    "node_selector",
    "tolerations",
    "service_account",
    "pod_template",
)
"""The ``@task`` keywords that make up a task's ``KubernetesOptions``."""
