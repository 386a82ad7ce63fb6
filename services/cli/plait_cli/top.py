"""``plait top``: a live view of a deployment from the same sources as its metrics. Queue depths, live executors
and the live replicas of every service (with their versions) are read from JetStream directly; running executions
from the catalog; each replica's readiness, counts and projection lag from its metrics endpoint (announced by the
replica, or given with ``--endpoint``)."""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass, field

import anyio
import anyio.to_thread
from nats.aio.client import Client as NATS
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from plait.adapters.connection import connect
from plait.adapters.executors import live_executors
from plait.adapters.nats_errors import as_plait_errors
from plait.adapters.services import live_services
from plait.client import AsyncClient
from plait.errors import PlaitError
from plait.metrics.endpoint import DEGRADED_PREFIX
from plait.metrics.queues import QueueSnapshot, read_queues
from plait.protocol.executors import ExecutorAnnouncement
from plait.protocol.services import ServiceAnnouncement
from plait.settings import Settings
from plait_cli.catalog_session import console
from plait_cli.stack import nats_for_command

SCRAPE_TIMEOUT_SECONDS = 2.0
RUNNING_SHOWN_UP_TO = 1000


@dataclass
class Endpoint:
    """What one service's endpoint said: its identity and the samples ``plait top`` shows."""

    url: str
    service: str = "?"
    version: str = "?"
    replica: str = "?"
    ready: bool = False
    problem: str = ""
    degraded: list[str] = field(default_factory=list)  # conditions of a ready replica an operator must mend
    samples: dict[str, float] = field(default_factory=dict)  # summed over labels


@dataclass
class TopView:
    queues: QueueSnapshot
    executors: list[ExecutorAnnouncement]
    endpoints: list[Endpoint]
    running: int | None  # None: the catalog did not answer


def read_endpoint(url: str) -> Endpoint:
    """Scrape ``url``/metrics and probe ``url``/readyz (blocking: run it in a thread)."""
    endpoint = Endpoint(url.rstrip("/"))
    if not endpoint.url.startswith(("http://", "https://")):
        endpoint.problem = "not an http:// or https:// URL"
        return endpoint
    try:
        with urllib.request.urlopen(f"{endpoint.url}/metrics", timeout=SCRAPE_TIMEOUT_SECONDS) as response:  # noqa: S310  http(s) only, checked above
            text = response.read().decode()
        with urllib.request.urlopen(f"{endpoint.url}/readyz", timeout=SCRAPE_TIMEOUT_SECONDS) as response:  # noqa: S310  http(s) only, checked above
            endpoint.ready = True
            lines = response.read().decode().splitlines()
        endpoint.degraded = [line.removeprefix(DEGRADED_PREFIX) for line in lines if line.startswith(DEGRADED_PREFIX)]
    except urllib.error.HTTPError as error:  # /readyz answered 503: not ready, and why
        endpoint.problem = error.read().decode().strip().replace("\n", "; ")
    except (OSError, ValueError) as error:
        endpoint.problem = f"unreachable ({error})"
        return endpoint
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "plait_build_info":
                endpoint.service = sample.labels.get("service", "?")
                endpoint.version = sample.labels.get("version", "?")
                endpoint.replica = sample.labels.get("replica", "?")
            elif sample.name.startswith("plait_"):
                key = sample.name
                if sample.name == "plait_attempt_duration_seconds_count":
                    key = f"{sample.name}:{sample.labels.get('outcome', '')}"
                endpoint.samples[key] = endpoint.samples.get(key, 0.0) + sample.value
    return endpoint


async def read_view(nc: NATS, client: AsyncClient, endpoints: list[str]) -> TopView:
    js = nc.jetstream()
    with as_plait_errors("reading the queues"):
        queues = await read_queues(js)
        executors = await live_executors(js)
        services = await live_services(js)
    urls = list(dict.fromkeys([*endpoints, *(s.metrics_url for s in services if s.metrics_url)]))
    scraped = {url: await anyio.to_thread.run_sync(read_endpoint, url) for url in urls}
    return TopView(queues, executors, replicas(services, scraped), await _running(client))


def replicas(services: list[ServiceAnnouncement], scraped: dict[str, Endpoint]) -> list[Endpoint]:
    """One row per live replica: those announced (with what their endpoint said, when they serve one), then the
    endpoints given that no announcement names."""
    rows: list[Endpoint] = []
    for announced in services:
        row = scraped.pop(announced.metrics_url, None) or Endpoint("", problem="no metrics endpoint")
        row.service, row.replica, row.version = announced.service, announced.replica, announced.version
        rows.append(row)
    return rows + list(scraped.values())


async def _running(client: AsyncClient) -> int | None:
    try:
        running = await client.list_executions(status="running", limit=RUNNING_SHOWN_UP_TO, timeout=2)
    except PlaitError:  # no catalog answers: the rest of the view is still worth showing
        return None
    return len(running)


def render(view: TopView) -> Group:
    """The view as rich tables: executions, queues, executors, services."""
    running = "?" if view.running is None else f"{view.running}{'+' if view.running >= RUNNING_SHOWN_UP_TO else ''}"
    header = Table.grid(padding=(0, 2))
    header.add_row(
        f"running executions: [bold]{running}[/]",
        f"timers: {view.queues.timers}",
        f"dead letters: {view.queues.dead_letters}",
        f"quarantined: {view.queues.quarantined}",
    )
    dispatch = Table(title="dispatch queues", box=None, title_justify="left")
    for column in ("cluster", "queue", "depth", "oldest", "executors"):
        dispatch.add_column(column)
    live: dict[tuple[str, str], int] = {}
    for executor in view.executors:
        live[executor.cluster, executor.queue] = live.get((executor.cluster, executor.queue), 0) + 1
    for cluster, queue in sorted(set(view.queues.dispatch) | set(live)):
        depth, oldest = view.queues.dispatch.get((cluster, queue), (0, 0.0))
        replicas = live.get((cluster, queue), 0)
        shown = f"[red]{replicas}[/]" if depth and not replicas else str(replicas)
        dispatch.add_row(cluster, queue, str(depth), f"{oldest:.0f}s", shown)
    consumers = Table(title="consumers", box=None, title_justify="left")
    for column in ("stream", "consumer", "pending", "unacked", "oldest"):
        consumers.add_column(column)
    for (stream, consumer), (pending, unacked, oldest) in sorted(view.queues.consumers.items()):
        consumers.add_row(stream, consumer, str(pending), str(unacked), f"{oldest:.0f}s")
    services = Table(title="services", box=None, title_justify="left")
    for column in ("service", "replica", "version", "ready", "decisions", "conflicts", "attempts ok/failed", "lag"):
        services.add_column(column)
    for endpoint in view.endpoints:
        s = endpoint.samples
        failed = s.get("plait_attempt_duration_seconds_count:failed_user", 0) + s.get(
            "plait_attempt_duration_seconds_count:failed_system", 0
        )
        attempts = f"{s.get('plait_attempt_duration_seconds_count:succeeded', 0):.0f}/{failed:.0f}"
        lag = f"{s.get('plait_projection_lag_messages', 0):.0f} ({s.get('plait_projection_lag_seconds', 0):.0f}s)"
        scheduler = endpoint.service == "scheduler" and bool(endpoint.url)
        services.add_row(
            endpoint.service,
            endpoint.replica,
            endpoint.version,
            _readiness(endpoint),
            f"{s.get('plait_decisions_total', 0):.0f}" if scheduler else "",
            f"{s.get('plait_decision_conflicts_total', 0):.0f}" if scheduler else "",
            attempts if endpoint.service == "executor" and endpoint.url else "",
            lag if endpoint.service == "catalog" and endpoint.url else "",
        )
    return Group(header, dispatch, consumers, services)


def _readiness(endpoint: Endpoint) -> str:
    if not endpoint.url:
        return "?"
    if not endpoint.ready:
        return f"[red]no[/] {escape(endpoint.problem or endpoint.url)}"
    if endpoint.degraded:
        return f"yes, [yellow]degraded[/]: {escape('; '.join(endpoint.degraded))}"
    return "yes"


async def top(settings: Settings, endpoints: list[str], once: bool, interval: float) -> int:
    async with nats_for_command(settings, services=()) as nats_url:
        nc = await connect(nats_url, "plait-top")
        try:
            async with await AsyncClient.connect(nats_url, settings.project, settings.domain) as client:
                if once:
                    console().print(render(await read_view(nc, client, endpoints)))
                    return 0
                with Live(console=Console(), auto_refresh=False, screen=False) as live:
                    while True:
                        live.update(render(await read_view(nc, client, endpoints)), refresh=True)
                        await anyio.sleep(interval)
        finally:
            await nc.close()
