"""Following executions: their decisions as they are appended, the outcome once they end, aborting them, and
reading their records for replay and audit."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import nats.errors
from nats.aio.subscription import Subscription

from plait import codec
from plait.adapters.commands import publish_command
from plait.adapters.connection import reconnection_count
from plait.adapters.event_log import StoredDecision
from plait.adapters.nats_errors import as_plait_errors
from plait.adapters.scoped_reads import follow_subject
from plait.client.connection import ClientBase, any_last_token, readable
from plait.client.identity import default_principal
from plait.client.outcome import ExecutionOutcome, outcome_of
from plait.core.commands import AbortExecution
from plait.core.events import TERMINAL_EVENTS
from plait.core.state import Execution
from plait.errors import InputError, NotFound, Timeout
from plait.protocol import subjects
from plait.replay import Record, record_of

FIRST_RELOAD_SECONDS = 0.001
LONGEST_RELOAD_SECONDS = 0.05
UNSEEN_DECISION_SECONDS = 1.0
"""How long ``wait`` waits for a decision to be sent to it before it considers reading the log again
(``_Rechecks``)."""
RECHECK_SECONDS = 30.0
"""How often ``wait`` reads the log, at most, while no decision is sent to it and its connection stays up."""


@dataclass
class _Rechecks:
    """When a waiter to which no decision was sent reads the log again: after its first silent second (a decision
    appended while it subscribed may have reached neither its subscription nor its first read, stored a moment after
    that read), then after twice as long each time up to every ``RECHECK_SECONDS``, in case a decision was dropped
    otherwise (a slow subscriber's): a missed end is seen within about as long as the wait had lasted; and at once
    after its connection was re-established (what was appended meanwhile was sent to no one). Not every silent
    second: a service following thousands of long executions would read the log thousands of times a second."""

    reconnects: int  # the connection's reconnections as of the last read
    last_read: float
    interval: float = 0.0  # silent seconds before the next read: 0 until the first one

    def due(self, reconnects: int, now: float) -> bool:
        return reconnects != self.reconnects or now - self.last_read >= self.interval

    def reading(self, reconnects: int, now: float) -> None:
        self.reconnects, self.last_read = reconnects, now
        self.interval = min(max(self.interval * 2, UNSEEN_DECISION_SECONDS), RECHECK_SECONDS)


class Following(ClientBase):
    async def events(self, execution_id: str, *, until_terminal: bool = True) -> AsyncIterator[StoredDecision]:
        """The execution's decisions from the start, then as they are appended; ends after the last one. (Read
        through a consumer whose create request names the execution's subject, so a credential confined to this
        project and domain may follow: see ``plait.adapters.scoped_reads``.)"""
        subject = self._subject(execution_id)
        action = f"following execution {execution_id}"
        with as_plait_errors(action), readable(action):
            async with contextlib.aclosing(follow_subject(self.js, subjects.EVENTS_STREAM, subject)) as messages:
                async for raw in messages:
                    stored = StoredDecision(raw.seq or 0, raw.data or b"")
                    yield stored
                    if until_terminal and any(isinstance(e, TERMINAL_EVENTS) for e in stored.decision.events):
                        return

    async def wait(self, execution_id: str, timeout: float | None = None) -> ExecutionOutcome:
        """How the execution ended, once it has succeeded, failed or been aborted.

        It reads the log twice (now, and once the terminal decision is out) and holds no consumer meanwhile:
        a core subscription to the execution's subject says when a decision is appended. Raises ``Timeout`` when
        it has not ended within ``timeout`` seconds.
        """
        return outcome_of(await self._final_state(execution_id, timeout))

    async def _final_state(self, execution_id: str, timeout: float | None) -> Execution:
        subject = self._subject(execution_id)
        try:
            with (
                anyio.fail_after(timeout),
                as_plait_errors(f"waiting for execution {execution_id}"),
                readable(f"waiting for execution {execution_id}"),
            ):
                async with self._appends(execution_id) as appended:
                    rechecks = _Rechecks(self._reconnects(), anyio.current_time())
                    state = await self._store.load(subject)
                    while state is None or not state.terminal:
                        try:
                            msg = await appended.next_msg(timeout=UNSEEN_DECISION_SECONDS)
                        except nats.errors.TimeoutError:
                            if rechecks.due(self._reconnects(), anyio.current_time()):
                                rechecks.reading(self._reconnects(), anyio.current_time())
                                state = await self._store.load(subject, state)
                            continue
                        if codec.ends_execution(msg.data):
                            state = await self._load_until_terminal(subject, state)
                    return state
        except TimeoutError:
            raise Timeout(f"execution {execution_id} did not end within {timeout:g} s") from None

    def _reconnects(self) -> int:
        return reconnection_count(self.nc)

    async def _load_until_terminal(self, subject: str, state: Execution | None) -> Execution:
        """The state once the stream has stored the terminal decision a subscriber was just sent: the server
        may send it to subscribers a moment before the stream has stored it."""
        delay = FIRST_RELOAD_SECONDS
        while True:
            state = await self._store.load(subject, state)
            if state is not None and state.terminal:
                return state
            await anyio.sleep(delay)
            delay = min(delay * 2, LONGEST_RELOAD_SECONDS)

    @contextlib.asynccontextmanager
    async def _appends(self, execution_id: str) -> AsyncIterator[Subscription]:
        """A core subscription to the execution's subject: each decision appended from now on is sent to it, without
        its stream sequence (so it says when to read the log, not what the log holds)."""
        subscription = await self.nc.subscribe(self._subject(execution_id))
        try:
            yield subscription
        finally:
            with anyio.CancelScope(shield=True), contextlib.suppress(nats.errors.Error):
                await subscription.unsubscribe()

    async def stored_outputs(self, execution_id: str) -> dict[str, Any]:
        """The outputs of a succeeded execution by name, as its log holds them (JSON values; a large value, a file
        or a directory as a reference to the object store). ``InputError`` when it has not succeeded."""
        with as_plait_errors(f"reading execution {execution_id}"):
            state = await self._store.load(self._subject(execution_id))
        if state is None:
            raise NotFound(f"execution {execution_id} does not exist in {self.project}/{self.domain}")
        if state.status != "succeeded" or state.outputs is None:
            raise InputError(f"execution {execution_id} is {state.status}: only a succeeded one has outputs")
        return state.outputs

    async def outputs(self, execution_id: str, directory: str | Path | None = None) -> dict[str, Any]:
        """``stored_outputs`` with what is stored by reference read: a file or directory downloaded under
        ``directory`` (a new temporary one when None: the caller's), as ``{"$plait": "file", "path": ...}``."""
        stored = await self.stored_outputs(execution_id)
        if directory is None:
            return await self._load_values(stored)
        await anyio.Path(directory).mkdir(parents=True, exist_ok=True)
        with as_plait_errors(f"reading the outputs of execution {execution_id}"):
            loaded: dict[str, Any] = await self._values.load_all(stored, Path(directory))
        return loaded

    async def abort(self, execution_id: str, reason: str = "aborted by request", *, aborted_by: str = "") -> None:
        """Ask the scheduler to abort the execution: its running attempts are cancelled, nothing new starts.
        ``aborted_by`` (default: ``user@host``) is recorded with the reason. An execution that ended before the
        abort is decided stays as it ended."""
        command = AbortExecution(
            command_id=f"abort:{execution_id}",
            execution_id=execution_id,
            reason=reason,
            aborted_by=aborted_by or default_principal(),
        )
        self._subject(execution_id)
        with as_plait_errors(f"aborting execution {execution_id}"):
            await publish_command(self.js, command, self.project, self.domain)

    async def records(self, execution_id: str) -> list[Record]:
        """The stored records of the execution's subject, as bytes, for replay and audit."""
        subject = self._subject(execution_id)
        records = []
        with as_plait_errors(f"reading execution {execution_id}"):
            async for raw in self._store.raw(subject, at_least=await self._store.last_sequence(subject)):
                assert raw.seq is not None and raw.data is not None  # noqa: S101  an invariant of this code, not a check of input
                records.append(record_of(raw, subject))
        if not records:
            raise NotFound(f"execution {execution_id} does not exist in {self.project}/{self.domain}")
        return records

    async def execution_ids(self) -> list[str]:
        """The ids of every execution in this project and domain that has a subject in the log."""
        pattern = any_last_token(subjects.execution_subject(self.project, self.domain, "_"))
        with as_plait_errors(f"listing the executions of {self.project}/{self.domain}"):
            return sorted(subject.rsplit(".", 1)[-1] for subject in await self._subjects(pattern))
