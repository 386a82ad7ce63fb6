"""A nats-server on a fixed loopback port, which a test kills and starts again: its clients reconnect to it."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

from plait_cli.embedded import find_nats_server

START_SECONDS = 30.0


class RestartableNats:
    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port: int = probe.getsockname()[1]
        self.url = f"nats://127.0.0.1:{self.port}"
        self.config = data_dir / "nats-server.conf"
        store = json.dumps(str(data_dir / "jetstream"))
        self.config.write_text(f'host: "127.0.0.1"\nport: {self.port}\njetstream {{\n  store_dir: {store}\n}}\n')
        self.log = data_dir / "nats-server.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [str(find_nats_server()), "-c", str(self.config)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nats-server exited with {self.process.returncode}; see {self.log}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)  # not listening yet
        raise RuntimeError(f"nats-server did not listen on {self.port} within {START_SECONDS} s; see {self.log}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
