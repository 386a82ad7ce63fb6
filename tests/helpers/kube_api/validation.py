"""What a Kubernetes API server rejects in a Job it is asked to create, with the field and the reason.

Two checks: the object's shape against the OpenAPI schema of ``KUBERNETES_VERSION`` (``kubernetes-validate`` in
strict mode: unknown fields and wrong types are errors), then the few semantic rules of the real server's
validation that a schema cannot express and that a Job's author can get wrong: names, label and annotation keys
and values, the restart policy, images, environment variable names, non-negative counts, and resource requests
against limits (extended resources such as ``nvidia.com/gpu`` cannot be overcommitted).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import kubernetes_validate

KUBERNETES_VERSION = "1.34"
"""The Kubernetes version whose schema objects are checked against."""

_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_ENV_VAR_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")
_QUANTITY = re.compile(r"([+-]?[0-9.]+)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?")
_SUFFIXES = {
    "": Decimal(1),
    **{suffix: Decimal(1024) ** power for power, suffix in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"), 1)},
    **{suffix: Decimal(10) ** exponent for suffix, exponent in (("n", -9), ("u", -6), ("m", -3), ("k", 3))},
    **{suffix: Decimal(10) ** (3 * power) for power, suffix in enumerate(("M", "G", "T", "P", "E"), 2)},
}
_ANNOTATIONS_LIMIT = 256 * 1024
_NATIVE_RESOURCES = {"cpu", "memory", "ephemeral-storage", "storage"}


@dataclass(frozen=True)
class Cause:
    """One reason an object is invalid, as a Status object's ``details.causes`` entry names it."""

    field: str
    message: str
    reason: str = "FieldValueInvalid"

    def as_status_cause(self) -> dict[str, str]:
        return {"reason": self.reason, "message": f"{self.field}: {self.message}", "field": self.field}


def is_dns1123_label(value: str) -> bool:
    return len(value) <= 63 and _DNS1123_LABEL.fullmatch(value) is not None


def is_dns1123_subdomain(value: str) -> bool:
    return len(value) <= 253 and _DNS1123_SUBDOMAIN.fullmatch(value) is not None


def is_label_value(value: str) -> bool:
    return value == "" or (len(value) <= 63 and _QUALIFIED_NAME.fullmatch(value) is not None)


def is_qualified_name(key: str) -> bool:
    """A label or annotation key: ``name`` or ``prefix/name``, the prefix a DNS subdomain."""
    prefix, _, name = key.rpartition("/")
    if "/" in key and not is_dns1123_subdomain(prefix):
        return False
    return len(name) <= 63 and _QUALIFIED_NAME.fullmatch(name) is not None


def quantity(value: str | int | float) -> Decimal:
    """A resource quantity (``500m``, ``1Gi``, ``2``) as a number; ``ValueError`` when it is not one."""
    match = _QUANTITY.fullmatch(str(value))
    if match is None:
        raise ValueError(f"{value!r} is not a quantity")
    number, suffix = match.group(1), match.group(2) or ""
    try:
        base = Decimal(number)
    except InvalidOperation as exc:
        raise ValueError(f"{value!r} is not a quantity") from exc
    if suffix[:1] in ("e", "E"):
        return base * Decimal(10) ** int(suffix[1:])
    return base * _SUFFIXES[suffix]


def job_causes(job: Mapping[str, Any]) -> list[Cause]:
    """Every reason the API server would refuse to create ``job``; empty when it would accept it."""
    try:
        kubernetes_validate.validate(dict(job), KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        field = ".".join(str(part) for part in error.path) or "<root>"
        return [Cause(field, error.message)]
    except kubernetes_validate.SchemaNotFoundError as error:
        return [Cause("kind", error.message, "FieldValueNotSupported")]
    return [*_metadata_causes(job.get("metadata", {}), job_name=True), *_job_spec_causes(job.get("spec", {}))]


def secret_causes(secret: Mapping[str, Any]) -> list[Cause]:
    """Every reason the API server would refuse to create ``secret``; empty when it would accept it."""
    try:
        kubernetes_validate.validate(dict(secret), KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        field = ".".join(str(part) for part in error.path) or "<root>"
        return [Cause(field, error.message)]
    metadata = secret.get("metadata", {})
    causes = list(_metadata_causes(metadata))
    name = metadata.get("name")
    if not name or not is_dns1123_subdomain(name):
        causes.append(Cause("metadata.name", f"Invalid value: {name!r}: a lowercase RFC 1123 subdomain is required"))
    for key, value in (secret.get("data") or {}).items():
        try:
            base64.b64decode(value, validate=True)
        except ValueError:
            causes.append(Cause(f"data[{key}]", "Invalid value: not base64"))
    return causes


def _metadata_causes(metadata: Mapping[str, Any], field: str = "metadata", job_name: bool = False) -> Iterator[Cause]:
    name = metadata.get("name")
    if job_name:
        if not name:
            yield Cause(f"{field}.name", "name or generateName is required", "FieldValueRequired")
        elif not is_dns1123_subdomain(name):
            yield Cause(
                f"{field}.name",
                f"Invalid value: {name!r}: a lowercase RFC 1123 subdomain must consist of "
                "lower case alphanumeric characters, '-' or '.'",
            )
        elif len(name) > 63:
            yield Cause(f"{field}.name", f"Invalid value: {name!r}: must be no more than 63 characters")
    for key, value in (metadata.get("labels") or {}).items():
        if not is_qualified_name(key):
            yield Cause(f"{field}.labels", f"Invalid value: {key!r}: name part must be a valid qualified name")
        if not is_label_value(value):
            yield Cause(
                f"{field}.labels",
                f"Invalid value: {value!r}: a valid label must be an empty string or "
                "at most 63 alphanumeric characters, '-', '_' or '.', starting and ending with an alphanumeric",
            )
    annotations = metadata.get("annotations") or {}
    for key in annotations:
        if not is_qualified_name(key):
            yield Cause(f"{field}.annotations", f"Invalid value: {key!r}: name part must be a valid qualified name")
    if sum(len(key) + len(value) for key, value in annotations.items()) > _ANNOTATIONS_LIMIT:
        yield Cause(f"{field}.annotations", "Too long: must have at most 262144 bytes", "FieldValueTooLong")


def _job_spec_causes(spec: Mapping[str, Any]) -> Iterator[Cause]:
    for counter in ("parallelism", "completions", "backoffLimit", "ttlSecondsAfterFinished"):
        if spec.get(counter, 0) < 0:
            yield Cause(f"spec.{counter}", f"Invalid value: {spec[counter]}: must be greater than or equal to 0")
    if spec.get("activeDeadlineSeconds", 1) <= 0:
        yield Cause("spec.activeDeadlineSeconds", "Invalid value: must be greater than 0")
    if spec.get("completionMode") == "Indexed" and spec.get("completions") is None:
        yield Cause("spec.completions", "Required value: when completion mode is Indexed", "FieldValueRequired")
    template = spec.get("template", {})
    yield from _metadata_causes(template.get("metadata", {}), "spec.template.metadata")
    pod = template.get("spec", {})
    if pod.get("restartPolicy") not in ("Never", "OnFailure"):
        yield Cause(
            "spec.template.spec.restartPolicy",
            f'Unsupported value: {pod.get("restartPolicy")!r}: supported values: "OnFailure", "Never"',
            "FieldValueNotSupported",
        )
    containers = pod.get("containers") or []
    if not containers:
        yield Cause("spec.template.spec.containers", "Required value", "FieldValueRequired")
    for index, container in enumerate([*containers, *pod.get("initContainers", [])]):
        yield from _container_causes(container, f"spec.template.spec.containers[{index}]")


def _container_causes(container: Mapping[str, Any], field: str) -> Iterator[Cause]:
    if not is_dns1123_label(container.get("name", "")):
        yield Cause(f"{field}.name", f"Invalid value: {container.get('name')!r}: must be a DNS-1123 label")
    if not container.get("image"):
        yield Cause(f"{field}.image", "Required value", "FieldValueRequired")
    for env in container.get("env", []):
        if not _ENV_VAR_NAME.fullmatch(env.get("name", "")):
            yield Cause(f"{field}.env.name", f"Invalid value: {env.get('name')!r}: a valid environment variable name")
    yield from _resources_causes(container.get("resources", {}), f"{field}.resources")


def _resources_causes(resources: Mapping[str, Any], field: str) -> Iterator[Cause]:
    amounts: dict[str, dict[str, Decimal]] = {"requests": {}, "limits": {}}
    for kind, named in amounts.items():
        for name, value in (resources.get(kind) or {}).items():
            try:
                named[name] = quantity(value)
            except ValueError:
                yield Cause(f"{field}.{kind}[{name}]", f"Invalid value: {value!r}: must be a quantity")
                continue
            if named[name] < 0:
                yield Cause(f"{field}.{kind}[{name}]", f"Invalid value: {value!r}: must be greater than or equal to 0")
    requests, limits = amounts["requests"], amounts["limits"]
    for name, requested in requests.items():
        extended = name not in _NATIVE_RESOURCES and not name.startswith("hugepages-")
        if name in limits and requested > limits[name]:
            yield Cause(f"{field}.requests", f"Invalid value: {name}: must be less than or equal to {name} limit")
        if extended and name not in limits:
            yield Cause(f"{field}.limits", f"Required value: Limit must be set for non overcommitable resources {name}")
        elif extended and requested != limits[name]:
            yield Cause(f"{field}.requests[{name}]", "Invalid value: must be equal to limit: not overcommitable")
        if extended and requested != requested.to_integral_value():
            yield Cause(f"{field}.requests[{name}]", "Invalid value: must be an integer")
