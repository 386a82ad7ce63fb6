"""The Kubernetes API stand-in: an aiohttp server on 127.0.0.1 answering the Job, Pod and Pod log endpoints the
Kubernetes backend uses, in the real API's shape, and the hooks a test drives the pods and the faults with."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from types import TracebackType
from typing import Any, cast, get_args

from aiohttp import web
from kubernetes_asyncio.client import Configuration

from tests.helpers.kube_api import pods, status
from tests.helpers.kube_api.jobs import JobController, PropagationPolicy, with_defaults
from tests.helpers.kube_api.selectors import LabelSelector
from tests.helpers.kube_api.status import ApiError
from tests.helpers.kube_api.store import ObjectStore, Watcher
from tests.helpers.kube_api.validation import Cause, job_causes, secret_causes

RESOURCES = {"jobs": ("batch", "batch/v1", "Job"), "pods": ("", "v1", "Pod"), "secrets": ("", "v1", "Secret")}
"""resource → (group, apiVersion, kind)."""
DEFAULT_PROPAGATION = "Orphan"  # batch/v1 Jobs keep their pods unless told otherwise, as on a real server

Container = Callable[["PodHandle"], Coroutine[Any, Any, int]]
"""What a test runs as a pod's container: it may ``log`` lines, and returns the exit code."""


class KubernetesApiStandIn:
    """A Kubernetes API stand-in for tests (not a Kubernetes: see docs/kubernetes.md for what it models).

    ``async with KubernetesApiStandIn() as api:`` serves on ``api.url``; ``api.configuration()`` points
    kubernetes-asyncio at it. Pods do not run by themselves: a test moves them with ``PodHandle``'s hooks.
    """

    def __init__(self) -> None:
        self.store = ObjectStore()
        self.controller = JobController(self.store)
        self.url = ""
        self._logs: dict[tuple[str, str], list[str]] = {}
        self._failures_left = 0
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> KubernetesApiStandIn:
        app = web.Application(middlewares=[self._answer_errors])
        jobs, namespaced_jobs = "/apis/batch/v1/jobs", "/apis/batch/v1/namespaces/{namespace}/jobs"
        pods_, namespaced_pods = "/api/v1/pods", "/api/v1/namespaces/{namespace}/pods"
        app.router.add_post(namespaced_jobs, self._create_job)
        for path in (jobs, namespaced_jobs):
            app.router.add_get(path, self._collection("jobs"))
        for path in (pods_, namespaced_pods):
            app.router.add_get(path, self._collection("pods"))
        app.router.add_get(namespaced_jobs + "/{name}", self._one("jobs"))
        app.router.add_delete(namespaced_jobs + "/{name}", self._delete_job)
        app.router.add_get(namespaced_pods + "/{name}", self._one("pods"))
        app.router.add_delete(namespaced_pods + "/{name}", self._delete_pod)
        app.router.add_get(namespaced_pods + "/{name}/log", self._pod_log)
        namespaced_secrets = "/api/v1/namespaces/{namespace}/secrets"
        app.router.add_post(namespaced_secrets, self._create_secret)
        app.router.add_get(namespaced_secrets, self._collection("secrets"))
        app.router.add_get(namespaced_secrets + "/{name}", self._one("secrets"))
        app.router.add_delete(namespaced_secrets + "/{name}", self._delete_secret)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.store.drop_watches(abort_connection=False)
        if self._runner is not None:
            await self._runner.cleanup()

    def configuration(self) -> Configuration:
        return Configuration(host=self.url)

    # Test-control hooks.

    def job(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.store.get("jobs", namespace, name)

    def pods(self, namespace: str, job: str) -> list[PodHandle]:
        """The pods of Job ``job`` that exist, ended or not, oldest first."""
        found = self.store.list("pods", namespace, LabelSelector(f"batch.kubernetes.io/job-name={job}"))
        return [PodHandle(self, namespace, pod["metadata"]["name"]) for pod in found]

    async def wait_for_pods(self, namespace: str, job: str, count: int = 1) -> list[PodHandle]:
        """The pods of Job ``job`` once it has ``count`` that have not ended."""

        def enough() -> list[PodHandle]:
            running = [pod for pod in self.pods(namespace, job) if not pods.is_finished(pod.manifest)]
            return running if len(running) >= count else []

        found: list[PodHandle] = await self.store.wait_until(enough)
        return found

    def delete_job(self, namespace: str, name: str, propagation_policy: PropagationPolicy = "Background") -> None:
        """Delete a Job as someone else would (a person, or the TTL controller after ``ttlSecondsAfterFinished``)."""
        self.controller.delete(namespace, name, propagation_policy)

    def expire_deadline(self, namespace: str, name: str) -> None:
        """The Job has been active for ``activeDeadlineSeconds``: it fails with DeadlineExceeded."""
        self.controller.expire_deadline(namespace, name)

    def drop_watches(self, abort_connection: bool = False) -> int:
        """End every open watch: cleanly (as the API server does on a restart or a timeout), or by closing the
        connection. Returns how many there were."""
        return self.store.drop_watches(abort_connection)

    def fail_next_requests(self, count: int) -> None:
        """Answer the next ``count`` requests, whatever they are, with 500 InternalError."""
        self._failures_left = count

    def compact(self) -> None:
        """Drop the event history: a watch from a resource version before now gets 410 Expired."""
        self.store.compact()

    def logs(self, namespace: str, pod: str) -> list[str]:
        return self._logs.setdefault((namespace, pod), [])

    # HTTP.

    @web.middleware
    async def _answer_errors(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            if self._failures_left > 0:
                self._failures_left -= 1
                raise status.internal_error("injected by the test")
            return await handler(request)
        except ApiError as error:
            return web.json_response(error.status, status=error.code)
        except web.HTTPNotFound:
            return web.json_response(status.no_such_path().status, status=404)
        except web.HTTPMethodNotAllowed as refused:
            return web.json_response(status.ApiError(405, "MethodNotAllowed", str(refused)).status, status=405)

    async def _create_job(self, request: web.Request) -> web.Response:
        namespace = request.match_info["namespace"]
        job = _object_in(await request.text(), "jobs", namespace)
        name = job["metadata"].get("name", "")
        if causes := job_causes(job):
            raise status.invalid("Job", "batch", name, causes)
        if self.store.get("jobs", namespace, name) is not None:
            raise status.already_exists("jobs", "batch", name)
        created = self.store.put("jobs", with_defaults(job, namespace))
        self.controller.sync(namespace, name)
        return web.json_response(created, status=201)

    async def _create_secret(self, request: web.Request) -> web.Response:
        namespace = request.match_info["namespace"]
        secret = _object_in(await request.text(), "secrets", namespace)
        name = secret["metadata"].get("name", "")
        if causes := secret_causes(secret):
            raise status.invalid("Secret", "", name, causes)
        if self.store.get("secrets", namespace, name) is not None:
            raise status.already_exists("secrets", "", name)
        secret["metadata"].update(namespace=namespace, uid=str(uuid.uuid4()), creationTimestamp=pods.now())
        return web.json_response(self.store.put("secrets", secret), status=201)

    async def _delete_secret(self, request: web.Request) -> web.Response:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        secret = self._get("secrets", namespace, name)
        self.store.remove("secrets", namespace, name)
        return web.json_response(status.success("secrets", "", name, secret["metadata"]["uid"]))

    def _collection(self, resource: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        _, api_version, kind = RESOURCES[resource]

        async def answer(request: web.Request) -> web.StreamResponse:
            namespace = request.match_info.get("namespace")
            selector = LabelSelector(request.query.get("labelSelector", ""))
            names = _field_selector(request.query.get("fieldSelector", ""))
            if request.query.get("watch", "").lower() in ("true", "1"):
                return await self._watch(request, resource, namespace, selector, names)
            items = [
                {key: value for key, value in item.items() if key not in ("kind", "apiVersion")}
                for item in self.store.list(resource, namespace, selector)
                if names is None or item["metadata"]["name"] == names
            ]
            metadata = {"resourceVersion": str(self.store.version)}
            return web.json_response(
                {"kind": f"{kind}List", "apiVersion": api_version, "metadata": metadata, "items": items}
            )

        return answer

    def _one(self, resource: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def answer(request: web.Request) -> web.Response:
            return web.json_response(self._get(resource, request.match_info["namespace"], request.match_info["name"]))

        return answer

    def _get(self, resource: str, namespace: str, name: str) -> dict[str, Any]:
        found = self.store.get(resource, namespace, name)
        if found is None:
            raise status.not_found(resource, RESOURCES[resource][0], name)
        return found

    async def _delete_job(self, request: web.Request) -> web.Response:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        body = json.loads(text) if (text := await request.text()) else {}
        policy = request.query.get("propagationPolicy") or body.get("propagationPolicy") or DEFAULT_PROPAGATION
        if policy not in get_args(PropagationPolicy):
            cause = Cause("propagationPolicy", f"Unsupported value: {policy!r}", "FieldValueNotSupported")
            raise status.invalid("DeleteOptions", "", "", [cause])
        job = self.controller.delete(namespace, name, cast(PropagationPolicy, policy))
        return web.json_response(status.success("jobs", "batch", name, job["metadata"]["uid"]))

    async def _delete_pod(self, request: web.Request) -> web.Response:
        """A graceful deletion: the pod is marked, its containers are killed (a pod of a Job then counts as failed,
        as the Job controller's tracking finalizer makes it count), and it is gone."""
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        pod = self._get("pods", namespace, name)
        self.controller.delete_pod(pod, kill=True)
        return web.json_response(pod)

    async def _pod_log(self, request: web.Request) -> web.Response:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        pod = self._get("pods", namespace, name)
        names = [container["name"] for container in pod["spec"]["containers"]]
        container = request.query.get("container") or (names[0] if len(names) == 1 else None)
        if container is None:
            raise status.bad_request(f"a container name must be specified for pod {name}, choose one of: {names}")
        if container not in names:
            raise status.bad_request(f"container {container} is not valid for pod {name}")
        if request.query.get("follow", "").lower() in ("true", "1"):
            raise status.bad_request("the Kubernetes API stand-in does not follow logs")
        waiting = pods.waiting_reason(pod)
        if waiting is not None:
            why = "trying and failing to pull image" if "Pull" in waiting else waiting
            raise status.bad_request(f'container "{container}" in pod "{name}" is waiting to start: {why}')
        lines = self.logs(namespace, name) if container == names[0] else []
        tail = _number(request, "tailLines")
        shown = lines[-tail:] if tail else ([] if tail == 0 else lines)
        return web.Response(text="".join(f"{line}\n" for line in shown), content_type="text/plain")

    async def _watch(
        self, request: web.Request, resource: str, namespace: str | None, selector: LabelSelector, name: str | None
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        since, timeout = _number(request, "resourceVersion"), _number(request, "timeoutSeconds")
        try:
            watcher = self.store.watch(resource, namespace, selector, since)
        except ApiError as error:
            await response.prepare(request)
            await response.write(_line({"type": "ERROR", "object": error.status}))
            await response.write_eof()
            return response
        await response.prepare(request)
        try:
            async with asyncio.timeout(timeout):
                await self._send_events(response, watcher, name)
        except TimeoutError:
            pass
        except ConnectionResetError:
            return response
        finally:
            self.store.unwatch(watcher)
        if watcher.abort_connection and request.transport is not None:
            request.transport.close()
            return response
        await response.write_eof()
        return response

    async def _send_events(self, response: web.StreamResponse, watcher: Watcher, name: str | None) -> None:
        while (event := await watcher.events.get()) is not None:
            if name is None or event.object["metadata"]["name"] == name:
                await response.write(_line(event.as_line()))


class PodHandle:
    """One pod of the stand-in, and what its kubelet would report: each hook changes the pod's status (one
    watch event), and the Job controller then updates its Job."""

    def __init__(self, api: KubernetesApiStandIn, namespace: str, name: str) -> None:
        self._api = api
        self.namespace = namespace
        self.name = name

    def __repr__(self) -> str:
        return f"PodHandle({self.namespace}/{self.name})"

    @property
    def manifest(self) -> dict[str, Any]:
        """The pod as stored now; raises when it has been deleted."""
        return self._api._get("pods", self.namespace, self.name)

    @property
    def index(self) -> int | None:
        """The completion index of a pod of an Indexed Job."""
        return pods.index_of(self.manifest)

    def start(self) -> None:
        self._change(pods.started)

    def succeed(self, log: Iterable[str] = ()) -> None:
        self.log(*log)
        self._end(0, "Completed")

    def fail(self, exit_code: int = 1, log: Iterable[str] = ()) -> None:
        self.log(*log)
        self._end(exit_code, "Error")

    def oom_kill(self) -> None:
        """The task container went over its memory limit: exit code 137, reason OOMKilled."""
        self._end(137, "OOMKilled")

    def evict(self) -> None:
        self._change(pods.evicted)

    def fail_image_pull(self) -> None:
        """The image cannot be pulled: ErrImagePull, and ImagePullBackOff if called again. The pod stays Pending
        (the Job controller does not fail it; only a deadline or a deletion ends it)."""
        if self.manifest["status"]["phase"] != "Pending":
            raise AssertionError(f"{self} is not pending: its image was already pulled")
        self._change(pods.image_pull_failed)

    def log(self, *lines: str) -> None:
        """Lines the task container writes to its log."""
        self._api.logs(self.namespace, self.name).extend(lines)

    async def run(self, container: Container) -> int | None:
        """Start the pod, run ``container`` and end the pod with the exit code it returns. When the pod is
        deleted first (its Job deleted or failed), ``container`` is cancelled and None is returned."""
        self.start()
        async with asyncio.TaskGroup() as group:
            running = group.create_task(container(self))
            deleted = group.create_task(self._api.store.wait_until(self._deleting))
            await asyncio.wait([running, deleted], return_when=asyncio.FIRST_COMPLETED)
            (deleted if running.done() else running).cancel()
        if running.cancelled():
            return None
        exit_code: int = running.result()
        if self._api.store.get("pods", self.namespace, self.name) is None:
            return exit_code  # deleted as its container exited (its Job was done with): no status to write
        self._end(exit_code, "Completed" if exit_code == 0 else "Error")
        return exit_code

    def _deleting(self) -> bool:
        pod = self._api.store.get("pods", self.namespace, self.name)
        return pod is None or "deletionTimestamp" in pod["metadata"]

    def _end(self, exit_code: int, reason: str) -> None:
        def ended(pod: dict[str, Any]) -> None:
            if pod["status"]["phase"] == "Pending":
                pods.started(pod)
            pods.terminated(pod, exit_code, reason)

        self._change(ended)

    def _change(self, step: Callable[[dict[str, Any]], None]) -> None:
        pod = self.manifest
        if pods.is_finished(pod):
            raise AssertionError(f"{self} has already ended ({pod['status']['phase']})")
        step(pod)
        self._api.store.put("pods", pod)
        for owner in pod["metadata"].get("ownerReferences", []):
            self._api.controller.sync(self.namespace, owner["name"])


def _object_in(text: str, resource: str, namespace: str) -> dict[str, Any]:
    """The object of a create request, with its kind and apiVersion defaulted from the path."""
    _, api_version, kind = RESOURCES[resource]
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise status.bad_request(f"the body of the request was in an unknown format: {exc}") from exc
    if not isinstance(obj, dict):
        raise status.bad_request("the body of the request was in an unknown format")
    obj.setdefault("apiVersion", api_version)
    obj.setdefault("kind", kind)
    if (obj["apiVersion"], obj["kind"]) != (api_version, kind):
        raise status.bad_request(
            f"the API version in the data ({obj['apiVersion']}) does not match the expected API version ({api_version})"
        )
    metadata = obj.setdefault("metadata", {})
    if metadata.get("namespace", namespace) != namespace:
        raise status.bad_request(
            "the namespace of the provided object does not match the namespace sent on the request"
        )
    return obj


def _field_selector(text: str) -> str | None:
    """The name a ``metadata.name=`` field selector asks for (the only field selector modelled)."""
    if not text:
        return None
    field, _, value = text.partition("=")
    if field != "metadata.name" or not value or "," in value:
        raise status.bad_request(f'field label not supported by the Kubernetes API stand-in: "{text}"')
    return value.removeprefix("=")


def _number(request: web.Request, parameter: str) -> int | None:
    """The whole number a query parameter gives, if it is there; 400 BadRequest when it is something else."""
    if parameter not in request.query:
        return None
    try:
        return int(request.query[parameter])
    except ValueError as exc:
        raise status.bad_request(f"invalid {parameter}: {request.query[parameter]!r}") from exc


def _line(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode() + b"\n"
