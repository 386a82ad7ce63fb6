"""Liveness and readiness of one service process, as its HTTP endpoint reports them.

Live: the event loop still runs (``keep_beating`` stamps it every second); a hung loop stops answering its probes
and is restarted. Ready: every named check passes (connected to NATS, PostgreSQL reachable, caught up...).
Degraded: ready, but a condition holds that an operator must mend (a stream this replica may not make is missing,
say): shown in the ``/readyz`` body and ``plait top``, counted by ``plait_degraded``; it fails no probe, since
restarting the replica would mend nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import anyio
from nats.aio.client import Client as NATS

from plait.metrics.names import DEGRADED, READY

BEAT_SECONDS = 1.0
STALLED_AFTER_SECONDS = 30.0  # an event loop that has not run for this long is hung

Check = Callable[[], str | None]  # None when it passes, else what is wrong


class Health:
    """The checks of one service process; read from the endpoint's thread, written from the event loop."""

    _changed: anyio.Event | None = None  # made by the first waiter, on the event loop

    def __init__(self) -> None:
        self._checks: dict[str, Check] = {}
        self._problems: dict[str, str | None] = {"service": "starting"}
        self._degraded: dict[str, str] = {}
        self._lock = threading.Lock()
        self._beat = time.monotonic()
        self.endpoint_url = ""  # where its endpoint serves, once it does (announced with the replica)
        READY.set_function(lambda: 0.0 if self.readiness_problems() else 1.0)  # as of each scrape

    def add_check(self, name: str, check: Check) -> None:
        with self._lock:
            self._checks[name] = check

    def set_problem(self, name: str, problem: str | None) -> None:
        """Record the outcome of a check made elsewhere (an async probe): None when it passes."""
        with self._lock:
            self._problems[name] = problem
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def set_degraded(self, name: str, condition: str | None) -> None:
        """Record that condition ``name`` holds (what it is and how to mend it), or no longer does (None)."""
        with self._lock:
            if condition is None:
                self._degraded.pop(name, None)
            else:
                self._degraded[name] = condition
        DEGRADED.labels(name).set(0 if condition is None else 1)

    def degraded(self) -> list[str]:
        """The conditions that hold, each as ``name: what it is``."""
        with self._lock:
            return [f"{name}: {condition}" for name, condition in self._degraded.items()]

    async def problem_reported(self, name: str) -> str:
        """The problem ``name`` reports, once it reports one (for a caller that awaits a service's state)."""
        while (problem := self._problems.get(name)) is None:
            if self._changed is None:
                self._changed = anyio.Event()
            await self._changed.wait()
        return problem

    def serving(self) -> None:
        """The service has started: from now on its checks alone say whether it is ready."""
        self.set_problem("service", None)

    def watch_nats(self, nc: NATS) -> None:
        self.add_check("nats", lambda: None if nc.is_connected else "not connected to NATS")

    def beat(self) -> None:
        self._beat = time.monotonic()

    def liveness_problem(self) -> str | None:
        stalled = time.monotonic() - self._beat
        return f"the event loop has not run for {stalled:.0f} s" if stalled > STALLED_AFTER_SECONDS else None

    def readiness_problems(self) -> list[str]:
        with self._lock:
            checks, problems = dict(self._checks), dict(self._problems)
        found = [f"{name}: {problem}" for name, problem in problems.items() if problem]
        for name, check in checks.items():
            if (problem := check()) is not None:
                found.append(f"{name}: {problem}")
        return found


async def keep_beating(health: Health) -> None:
    """Until cancelled: tell ``health`` the event loop runs."""
    while True:
        health.beat()
        await anyio.sleep(BEAT_SECONDS)
