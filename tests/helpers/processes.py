"""plait services as separate OS processes, for tests that signal or kill them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


class ServiceProcess:
    """``plait <service>`` in a child process; its JSON log lines are collected as they come."""

    def __init__(self, service: str, env: dict[str, str]) -> None:
        self.service = service
        self.process = subprocess.Popen(
            [sys.executable, "-m", "plait_cli.main", service],
            cwd=REPO,
            env={**os.environ, "PLAIT_LOG_FORMAT": "json", "PLAIT_LOG_LEVEL": "info", **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.events: list[dict[str, object]] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                event = {"event": "unstructured", "line": line.rstrip()}
            with self._changed:
                self.events.append(event)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(
        self, matches: Callable[[dict[str, object]], bool], what: str, timeout: float = 30
    ) -> dict[str, object]:
        """The first log entry that ``matches``; raises if the process ends or the deadline passes first."""
        with self._changed:
            self._changed.wait_for(
                lambda: any(matches(e) for e in self.events) or self.process.poll() is not None, timeout
            )
            found = [e for e in self.events if matches(e)]
        if not found:
            raise AssertionError(f"{self.service} logged no {what}; its log: {self.events[-20:]}")
        return found[0]

    def wait_for_event(self, name: str, timeout: float = 30) -> dict[str, object]:
        return self.wait_for(lambda e: e.get("event") == name, repr(name), timeout)

    def wait_for_line(self, text: str, timeout: float = 30) -> dict[str, object]:
        """The first line that is not a JSON log entry and contains ``text`` (what a person is shown)."""
        return self.wait_for(lambda e: text in str(e.get("line", "")), repr(text), timeout)

    def terminate(self, timeout: float = 40) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.kill()
        self._reader.join(10)


def started(replicas: list[ServiceProcess]) -> Iterator[list[ServiceProcess]]:
    """``replicas`` once each has logged its start; stopped afterwards (a fixture's body: ``yield from``)."""
    try:
        for replica in replicas:
            replica.wait_for_event("scheduler_started")
        yield replicas
    finally:
        for replica in replicas:
            replica.stop()
