"""Renders deploy/k8s's kustomizations offline, as ``kubectl kustomize`` does, for the features they use.

No maintained Python library renders kustomize, so this covers what deploy/k8s uses and refuses the rest:
``resources`` (files and directories), ``namespace``, ``images`` and ``patches`` given by ``path`` holding
strategic merge patches (maps merge; ``containers``, ``initContainers``, ``env`` and ``volumes`` merge by
``name``; any other list in a patch is refused rather than guessed). tests/unit/test_deploy_manifests.py checks
this renderer's output against ``kubectl kustomize`` wherever kubectl is installed.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

Manifest = dict[str, Any]

SUPPORTED_FIELDS = frozenset({"apiVersion", "kind", "resources", "namespace", "images", "patches"})
LISTS_MERGED_BY_NAME = frozenset({"containers", "initContainers", "env", "volumes"})
CLUSTER_SCOPED_KINDS = frozenset({"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume"})


class UnsupportedKustomization(Exception):
    """The kustomization uses a feature this renderer does not implement."""


def load_documents(path: Path) -> list[Manifest]:
    """Every non-empty YAML document in ``path``."""
    with path.open() as file:
        return [document for document in yaml.safe_load_all(file) if document is not None]


def render(directory: Path) -> list[Manifest]:
    """The objects ``kubectl kustomize directory`` would print (in no particular order)."""
    kustomization = _kustomization(directory)
    objects: list[Manifest] = []
    for entry in kustomization.get("resources", []):
        path = directory / entry
        objects.extend(render(path) if path.is_dir() else load_documents(path))
    for entry in kustomization.get("patches", []):
        if set(entry) != {"path"}:
            raise UnsupportedKustomization(f"{directory}: only `patches: - path: FILE` is rendered, got {entry}")
        for patch in load_documents(directory / entry["path"]):
            index = _patch_target(objects, patch, directory / entry["path"])
            objects[index] = strategic_merge(objects[index], patch)
    if "namespace" in kustomization:
        for manifest in objects:
            if manifest["kind"] not in CLUSTER_SCOPED_KINDS:
                manifest["metadata"]["namespace"] = kustomization["namespace"]
    for image in kustomization.get("images", []):
        _set_image(objects, image)
    return objects


def _kustomization(directory: Path) -> Manifest:
    [kustomization] = load_documents(directory / "kustomization.yaml")
    unknown = set(kustomization) - SUPPORTED_FIELDS
    if unknown:
        raise UnsupportedKustomization(f"{directory}: {sorted(unknown)} not rendered by tests/helpers/kustomize.py")
    return kustomization


def _patch_target(objects: list[Manifest], patch: Manifest, source: Path) -> int:
    """The index of the one object ``patch`` names by kind, name and namespace (kustomize's matching)."""
    metadata = patch["metadata"]
    matches = [
        index
        for index, manifest in enumerate(objects)
        if manifest["kind"] == patch["kind"]
        and manifest["metadata"]["name"] == metadata["name"]
        and manifest["metadata"].get("namespace") == metadata.get("namespace")
    ]
    if len(matches) != 1:
        raise UnsupportedKustomization(f"{source}: {len(matches)} objects match {patch['kind']}/{metadata['name']}")
    return matches[0]


def strategic_merge(original: Any, patch: Any, field: str = "") -> Any:
    """``patch`` merged into ``original`` as a strategic merge patch, for the subset described above."""
    if isinstance(patch, dict) and isinstance(original, dict):
        merged = copy.deepcopy(original)
        for key, value in patch.items():
            if key.startswith("$"):
                raise UnsupportedKustomization(f"patch directive {key} is not rendered")
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = strategic_merge(original[key], value, key) if key in original else copy.deepcopy(value)
        return merged
    if isinstance(patch, list):
        if field not in LISTS_MERGED_BY_NAME:
            raise UnsupportedKustomization(f"a patch of the list `{field}` is not rendered")
        merged_list = copy.deepcopy(original)
        positions = {item["name"]: index for index, item in enumerate(merged_list)}
        for item in patch:
            if item["name"] in positions:
                position = positions[item["name"]]
                merged_list[position] = strategic_merge(merged_list[position], item)
            else:
                merged_list.append(copy.deepcopy(item))
        return merged_list
    return copy.deepcopy(patch)


def _set_image(objects: list[Manifest], image: Manifest) -> None:
    for manifest in objects:
        for container in pod_containers(manifest):
            name = image_name(container["image"])
            if name != image["name"]:
                continue
            new_name = image.get("newName", name)
            if "digest" in image:
                container["image"] = f"{new_name}@{image['digest']}"
            elif "newTag" in image:
                container["image"] = f"{new_name}:{image['newTag']}"
            else:
                container["image"] = new_name + container["image"][len(name) :]


def image_name(image: str) -> str:
    """``registry/name`` without its tag or digest."""
    without_digest = image.split("@", 1)[0]
    slash = without_digest.rfind("/")
    colon = without_digest.rfind(":")
    return without_digest[:colon] if colon > slash else without_digest


def pod_spec(manifest: Manifest) -> Manifest | None:
    """The pod spec of a Pod or of a workload's pod template; None for other kinds."""
    if manifest["kind"] == "Pod":
        spec: Manifest = manifest["spec"]
        return spec
    if manifest["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        template_spec: Manifest = manifest["spec"]["template"]["spec"]
        return template_spec
    return None


def pod_containers(manifest: Manifest) -> list[Manifest]:
    """Every container and init container of ``manifest``'s pods."""
    spec = pod_spec(manifest)
    if spec is None:
        return []
    return [*spec.get("initContainers", []), *spec["containers"]]
