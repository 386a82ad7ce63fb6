"""Reading a service's metrics and health endpoint as Prometheus and Kubernetes do: over HTTP, from outside."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from collections.abc import Callable

import anyio
import anyio.to_thread
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def get(url: str) -> tuple[int, str]:
    """The status and body of a GET (an error status is returned, not raised)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def scrape(base_url: str) -> Samples:
    """Every sample of ``base_url``/metrics, by name and labels."""
    status, text = get(f"{base_url}/metrics")
    assert status == 200, text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """A sample's value; 0 when it is not exported (a gauge of a queue that is empty and gone)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


async def scraped_until(base_url: str, holds: Callable[[Samples], bool], what: str, timeout: float = 30) -> Samples:
    """Scrape every half second (the way Prometheus polls) until ``holds``; fails naming ``what`` after ``timeout``."""
    samples: Samples = {}
    with anyio.move_on_after(timeout):
        while True:
            samples = await anyio.to_thread.run_sync(scrape, base_url)
            if holds(samples):
                return samples
            await anyio.sleep(0.5)
    raise AssertionError(f"{base_url}/metrics never showed {what}")


async def status_until(url: str, status: int, timeout: float = 30) -> str:
    """Probe ``url`` every half second until it answers ``status``; returns the body."""
    seen: tuple[int, str] = (0, "")
    with anyio.move_on_after(timeout):
        while True:
            seen = await anyio.to_thread.run_sync(get, url)
            if seen[0] == status:
                return seen[1]
            await anyio.sleep(0.5)
    raise AssertionError(f"{url} never answered {status} (last: {seen})")
