"""The small HTTP server of a service process: ``/metrics`` (Prometheus text format), ``/livez`` and ``/readyz``
(503 with what fails; else 200 with "ok", then a line per degraded condition).

It runs in a thread of its own (stdlib ``http.server``), so a scrape or a probe is answered whatever the event loop
is doing, and a hung loop shows as a failing ``/livez``.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import anyio
import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from plait.metrics.health import Health, keep_beating
from plait.metrics.names import BUILD_INFO, REGISTRY

log = structlog.get_logger()

DEGRADED_PREFIX = "degraded: "
"""How a ready service's ``/readyz`` body names a condition an operator must mend, one per line after "ok"."""


def _handler(health: Health) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._answer(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
            elif path == "/livez":
                problem = health.liveness_problem()
                self._answer(503 if problem else 200, (problem or "ok").encode() + b"\n")
            elif path == "/readyz":
                problems = health.readiness_problems()
                lines = problems or ["ok", *(f"{DEGRADED_PREFIX}{condition}" for condition in health.degraded())]
                self._answer(503 if problems else 200, "\n".join(lines).encode() + b"\n")
            else:
                self._answer(404, b"not found: try /metrics, /livez or /readyz\n")

        def _answer(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # scrapes every few seconds: not worth a log line
            pass

    return Handler


@contextlib.contextmanager
def serving_endpoint(health: Health, address: str, port: int) -> Iterator[str]:
    """Serve the endpoint on ``address``:``port`` (0: a free port) while in the block; yields its base URL."""
    server = ThreadingHTTPServer((address, port), _handler(health))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="plait-metrics", daemon=True)
    thread.start()
    try:
        host, bound = server.server_address[:2]
        yield f"http://{host!s}:{bound}"
    finally:
        server.shutdown()
        server.server_close()


def plait_version() -> str:
    try:
        return importlib.metadata.version("plait")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


@contextlib.asynccontextmanager
async def observed(health: Health, service: str, replica: str, address: str, port: int) -> AsyncIterator[str]:
    """The endpoint of one service process while in the block (its liveness beat included); yields its URL."""
    BUILD_INFO.labels(service, plait_version(), replica).set(1)
    with serving_endpoint(health, address, port) as url:
        health.endpoint_url = advertised(url)
        log.info("metrics_serving", url=url, service=service)
        async with anyio.create_task_group() as tg:
            tg.start_soon(keep_beating, health)
            try:
                yield url
            finally:
                tg.cancel_scope.cancel()


def advertised(url: str) -> str:
    """The URL others reach an endpoint at: one bound to all addresses is advertised at this host's address."""
    scheme, _, rest = url.partition("://")
    host, _, port = rest.rpartition(":")
    if host not in ("0.0.0.0", "::"):  # noqa: S104  recognises an all-interfaces address, binds nothing
        return url
    try:
        host = socket.gethostbyname(socket.gethostname())
    except OSError:
        host = socket.gethostname()
    return f"{scheme}://{host}:{port}"
