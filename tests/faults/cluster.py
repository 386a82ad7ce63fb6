"""A three-node JetStream cluster: three nats-server processes on loopback, routed to each other."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import StreamInfo

from plait import errors
from plait.adapters.connection import connect
from plait_cli.embedded import find_nats_server

NODES = ("n1", "n2", "n3")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class ClusterNode:
    def __init__(self, name: str, folder: Path, client_port: int, route_port: int, routes: list[int]) -> None:
        self.name, self.folder = name, folder
        self.url = f"nats://127.0.0.1:{client_port}"
        folder.mkdir(parents=True, exist_ok=True)
        self.config = folder / "nats-server.conf"
        self.config.write_text(
            "\n".join(
                [
                    f"server_name: {name}",
                    'host: "127.0.0.1"',
                    f"port: {client_port}",
                    f"jetstream {{ store_dir: {json.dumps(str(folder / 'store'))} }}",
                    "cluster {",
                    "  name: plait-faults",
                    '  host: "127.0.0.1"',
                    f"  port: {route_port}",
                    "  routes: [" + ", ".join(f"nats-route://127.0.0.1:{port}" for port in routes) + "]",
                    "}",
                    "",
                ]
            )
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.folder / "nats-server.log").open("ab")
        self.process = subprocess.Popen([str(find_nats_server()), "-c", str(self.config)], stdout=log, stderr=log)

    def signal(self, signum: signal.Signals) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signum)
            self.process.wait(30)


class NatsCluster:
    """Three routed nodes; ``url`` names all three, as services are given it."""

    def __init__(self, folder: Path) -> None:
        client_ports = [_free_port() for _ in NODES]
        route_ports = [_free_port() for _ in NODES]
        self.nodes = [
            ClusterNode(name, folder / name, client_ports[i], route_ports[i], route_ports[:i] + route_ports[i + 1 :])
            for i, name in enumerate(NODES)
        ]
        self.url = ",".join(node.url for node in self.nodes)

    def node(self, name: str) -> ClusterNode:
        return next(node for node in self.nodes if node.name == name)

    def start(self) -> None:
        for node in self.nodes:
            node.start()

    def stop(self) -> None:
        for node in self.nodes:
            node.signal(signal.SIGTERM)

    async def wait_ready(self, timeout: float = 60) -> None:
        """Until JetStream answers through the cluster (a meta leader is elected), and every stream that exists
        has a leader."""
        with anyio.fail_after(timeout):
            while True:
                try:
                    nc = await connect(self.url, "cluster-probe")
                except errors.ConnectError:  # not up yet
                    await anyio.sleep(0.5)
                    continue
                try:
                    js = nc.jetstream()
                    await js.account_info()
                    if all([(s.cluster and s.cluster.leader) async for s in _streams(js)]):
                        return
                    await anyio.sleep(0.5)
                except (nats.errors.Error, nats.js.errors.Error):
                    await anyio.sleep(0.5)
                finally:
                    await nc.close()


async def _streams(js: JetStreamContext) -> AsyncIterator[StreamInfo]:
    for info in await js.streams_info():
        yield await js.stream_info(info.config.name or "")
