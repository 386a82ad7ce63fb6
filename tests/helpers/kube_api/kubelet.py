"""A kubelet for the stand-in that runs each new pod's task container as a local process: its command (``python``
being this interpreter), with the environment the pod spec gives it on top of this process's (less the credentials
a worker process would not inherit either), from the
repository's root. Its output lines become the pod's log and its exit code ends the pod; a pod deleted meanwhile
kills the process. A test may take over chosen pods (``take``) to play what a cluster does to them instead."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

from plait_executor.worker_environment import withheld
from tests.helpers.kube_api import pods
from tests.helpers.kube_api.selectors import LabelSelector
from tests.helpers.kube_api.server import KubernetesApiStandIn, PodHandle

REPOSITORY = Path(__file__).resolve().parents[3]

PodPlay = Callable[[PodHandle], Awaitable[None]]
"""What a test does with a pod it took over."""


class LocalKubelet:
    def __init__(self, api: KubernetesApiStandIn, namespace: str) -> None:
        self.api = api
        self.namespace = namespace
        self.takers: list[tuple[Callable[[dict[str, Any]], bool], PodPlay]] = []
        self.ran: list[str] = []  # the pods whose container ran, in order

    def take(self, chosen: Callable[[dict[str, Any]], bool], play: PodPlay) -> None:
        """Pods for which ``chosen(pod manifest)`` is true are played by ``play`` instead of run."""
        self.takers.append((chosen, play))

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[LocalKubelet]:
        task = asyncio.create_task(self._serve())
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def container(self, pod: PodHandle) -> int:
        """Run the pod's task container as a local process until it exits; its exit code. Its Secret volumes are
        written to a folder of their own first (waiting, as a kubelet does, until each Secret exists), and a
        variable naming a path under a mount names it in that folder instead."""
        [spec] = [c for c in pod.manifest["spec"]["containers"] if c["name"] == "task"]
        command = [sys.executable if spec["command"][0] == "python" else spec["command"][0], *spec["command"][1:]]
        # A container's HOSTNAME is its pod's hostname: the pod's name, or ``<job>-<index>`` in an Indexed Job.
        inherited = {  # a pod holds none of its executor's credentials: only what its spec gives it
            name: value for name, value in os.environ.items() if not (withheld(name) or name.startswith("PLAIT_NATS_"))
        }
        env = {**inherited, "HOSTNAME": pod.manifest["spec"].get("hostname") or pod.name[:63]}
        with tempfile.TemporaryDirectory(prefix="plait-kubelet-") as volumes:
            mounts = await self._mount_secrets(pod.manifest, spec, Path(volumes))
            for item in spec.get("env", []):
                value = _value_of(item, pod.manifest)
                for mount_path, folder in mounts.items():
                    if value.startswith(mount_path + "/"):
                        value = str(folder) + value[len(mount_path) :]
                env[item["name"]] = value
            process = await asyncio.create_subprocess_exec(
                *command, env=env, cwd=REPOSITORY, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
            )
            self.ran.append(pod.name)
            try:
                assert process.stdout is not None
                async for line in process.stdout:
                    pod.log(line.decode(errors="replace").rstrip("\n"))
                return await process.wait()
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()

    async def _mount_secrets(self, pod: dict[str, Any], container: dict[str, Any], folder: Path) -> dict[str, Path]:
        """The container's Secret volumes, each written into a folder under ``folder``: mount path → folder."""
        volumes = {volume["name"]: volume for volume in pod["spec"].get("volumes", [])}
        mounts = {}
        for mount in container.get("volumeMounts", []):
            source = volumes.get(mount["name"], {}).get("secret")
            if source is None:
                continue
            stored = partial(self.api.store.get, "secrets", self.namespace, source["secretName"])
            secret = await self.api.store.wait_until(stored)
            data = secret.get("data", {})
            items = source.get("items") or [{"key": key, "path": key} for key in data]
            target = folder / mount["name"]
            target.mkdir()
            for item in items:
                (target / item["path"]).write_bytes(base64.b64decode(data[item["key"]]))
            mounts[mount["mountPath"].rstrip("/")] = target
        return mounts

    async def _serve(self) -> None:
        seen: set[str] = set()
        async with asyncio.TaskGroup() as group:
            while True:
                new = await self.api.store.wait_until(lambda: self._new_pods(seen))
                for pod in new:
                    seen.add(pod["metadata"]["name"])
                    group.create_task(self._play(pod))

    def _new_pods(self, seen: set[str]) -> list[dict[str, Any]]:
        return [
            pod
            for pod in self.api.store.list("pods", self.namespace, LabelSelector(""))
            if pod["metadata"]["name"] not in seen and not pods.is_finished(pod)
        ]

    async def _play(self, pod: dict[str, Any]) -> None:
        handle = PodHandle(self.api, self.namespace, pod["metadata"]["name"])
        for chosen, play in self.takers:
            if chosen(pod):
                await play(handle)
                return
        await handle.run(self.container)


_FIELD = re.compile(r"metadata\.(annotations|labels)\['([^']+)'\]")


def _value_of(variable: dict[str, Any], pod: dict[str, Any]) -> str:
    """An environment variable's value: given, or from a field of the pod (the downward API; say the completion
    index an Indexed Job's pod gets in ``JOB_COMPLETION_INDEX``)."""
    if "value" in variable:
        return str(variable["value"])
    path = variable.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath", "")
    metadata = pod["metadata"]
    if found := _FIELD.fullmatch(path):
        return str(metadata.get(found[1], {}).get(found[2], ""))
    if path in ("metadata.name", "metadata.namespace", "metadata.uid"):
        return str(metadata[path.split(".")[1]])
    if path == "spec.nodeName":
        return str(pod["spec"].get("nodeName", ""))
    raise AssertionError(f"the local kubelet cannot resolve variable {variable['name']} ({variable})")
