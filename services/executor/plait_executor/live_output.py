"""Publishing what a running attempt writes, as it writes it, for ``plait logs --follow``.

The worker process captures the attempt's output into a file the executor names (``plait_executor.capture``); the
executor reads the file's new bytes a few times a second and publishes them, in chunks, to the live output stream
(memory storage, kept an hour: a view, not the record — the attempt's output is stored whole when it ends). A task
writing faster than the view can carry has the middle skipped, with a line saying how much. Nothing here may fail an
attempt: a publish that fails pauses the live view of that attempt alone, until its connection is made anew (then a
line says the view was interrupted). A standalone nats-server that restarted has lost the stream, being in memory: the
first publish that finds it gone makes it again (where this connection may manage streams; else the operator does,
with ``plait streams ensure``, and meanwhile the executor reports itself degraded, looks for the stream every
``PROBE_SECONDS``, and goes on with the paused views once it is back).
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path

import anyio
import anyio.to_thread
import nats.errors
import nats.js.errors
import structlog
from nats.js import JetStreamContext
from structlog.typing import FilteringBoundLogger

from plait.adapters.connection import authenticated, reconnection_count, route_of
from plait.adapters.streams import ENSURE_COMMAND, LIVE_OUTPUT_MAX_MESSAGE_BYTES, ensure_stream
from plait.core.dispatch import Dispatch
from plait.protocol import subjects
from plait.protocol.headers import PLAIT_ATTEMPT, PLAIT_OUTPUT_END, PLAIT_OUTPUT_OFFSET
from plait.sdk import secrets
from plait_executor.folders import private_folder

log: FilteringBoundLogger = structlog.get_logger("plait.executor")

POLL_SECONDS = 0.2
PROBE_SECONDS = 5.0
"""How often the ticker looks for a missing live output stream that this executor may not make."""
CHUNK_BYTES = LIVE_OUTPUT_MAX_MESSAGE_BYTES // 2  # headers and all fit
LOGS_HINT = "`plait logs` has the whole output"
MOST_BEHIND_BYTES = 1024**2
"""A task that wrote more than this since the last read has the rest of it skipped in the live view."""


class LiveOutput:
    """Tails the output files of running attempts, in a folder of its own, into the live output stream.

    While ``tick`` runs, one task reads every running attempt's file a few times a second; else each attempt has a
    task of its own doing it. An attempt ended sooner than the first read publishes its whole output once, at its end.
    """

    def __init__(
        self, js: JetStreamContext, directory: Path, on_degraded: Callable[[str | None], None] = lambda _: None
    ) -> None:
        """``on_degraded``: told what is wrong while the stream is missing and this executor may not make it, and
        None once it is back."""
        self.js = js
        self.directory = directory
        self._tails: set[_Tail] = set()
        self._ticking = False
        self._files = itertools.count()  # names each attempt's file in the folder, which is this executor's alone
        self._remaking = anyio.Lock()  # one look for the lost stream at a time: the others find it made
        self._stream = _StreamWatch(on_degraded)

    async def tick(self) -> None:
        """Publish what each running attempt wrote, every ``POLL_SECONDS``, and look for a missing stream every
        ``PROBE_SECONDS``, until cancelled."""
        self._ticking = True
        probed = anyio.current_time()
        try:
            while True:
                await anyio.sleep(POLL_SECONDS)
                if self._stream.missing and anyio.current_time() - probed >= PROBE_SECONDS:
                    probed = anyio.current_time()
                    with contextlib.suppress(nats.errors.Error):  # NATS away: looked for again at the next probe
                        await self._stream_back()
                for tail in list(self._tails):
                    await tail.poll()
        finally:
            self._ticking = False

    @contextlib.asynccontextmanager
    async def tailing(self, dispatch: Dispatch, secret_values: Iterable[str] = ()) -> AsyncIterator[str]:
        """The path the attempt of ``dispatch`` writes its output to, published while it runs with ``secret_values``
        redacted; on exit the rest is published with an end marker, and the file removed."""
        path = os.path.join(self.directory, f"{next(self._files)}.out")
        secrets_written = [value.encode() for value in secret_values if value]
        tail = _Tail(self.js, dispatch, path, secrets_written, self._stream_back, self._stream)
        try:
            if self._ticking:
                self._tails.add(tail)
                try:
                    yield path
                finally:
                    self._tails.discard(tail)
                    with anyio.CancelScope(shield=True):  # the end marker is published even when cancelled
                        await tail.finish()
            else:
                failed: Exception | None = None  # the attempt's own error: raised as it came, not in a group
                done = anyio.Event()
                async with anyio.create_task_group() as tailing:
                    tailing.start_soon(tail.run, done)
                    try:
                        yield path
                    except Exception as exc:
                        failed = exc
                    finally:
                        done.set()
                if failed is not None:
                    raise failed
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    async def _stream_back(self) -> bool:
        """Whether the live output stream is there again, made here if it was gone and this connection may make it."""
        async with self._remaking:
            if not authenticated(self.js):  # unchanged when made meanwhile
                if await ensure_stream(self.js, subjects.LIVE_OUTPUT_STREAM) == "created":
                    log.warning("live_output_stream_made_anew", stream=subjects.LIVE_OUTPUT_STREAM)
            else:
                try:
                    await self.js.stream_info(subjects.LIVE_OUTPUT_STREAM)  # made meanwhile, by the operator?
                except nats.js.errors.NotFoundError:
                    self._stream.gone()
                    return False
            self._stream.back()
            return True


class _StreamWatch:
    """Whether the live output stream was found missing where this executor may not make it (reported once, until it
    is back), and how many times it came back: a view paused while it was gone goes on once it is back."""

    def __init__(self, on_degraded: Callable[[str | None], None]) -> None:
        self.missing = False
        self.returns = 0
        self._on_degraded = on_degraded

    def gone(self) -> None:
        if not self.missing:
            self.missing = True
            fix = f"{ENSURE_COMMAND} (as the operator)"
            log.error("live_output_stream_missing", stream=subjects.LIVE_OUTPUT_STREAM, fix=fix)
            missing = f"stream {subjects.LIVE_OUTPUT_STREAM} is missing (no live view of attempts)"
            self._on_degraded(f"{missing}: run `{ENSURE_COMMAND}` as the operator")

    def back(self) -> None:
        if self.missing:
            self.missing = False
            self.returns += 1
            log.info("live_output_stream_back", stream=subjects.LIVE_OUTPUT_STREAM)
            self._on_degraded(None)


class _Tail:
    def __init__(
        self,
        js: JetStreamContext,
        dispatch: Dispatch,
        path: str,
        secret_values: list[bytes],
        stream_back: Callable[[], Awaitable[bool]],
        stream: _StreamWatch,
    ) -> None:
        self.js = js
        self.path = path
        self.secrets = secret_values
        self.held = b""  # the end of what was read, held back while it may be the start of a secret
        self.dispatch = dispatch
        self.stream_back = stream_back
        self.stream = stream
        self.lock = anyio.Lock()  # one reader of the file at a time: the ticker, or the attempt at its end
        self.stopped = False  # ended: nothing more is published
        # A publish failed: nothing is published until the connection was made anew, or the stream found missing
        # came back (the connection's reconnections, or the stream's returns, differ from these).
        self.paused_at: tuple[int, int] | None = None
        self.offset = 0  # the bytes of the file published so far
        self.published = 0  # and the bytes of the view, markers included

    async def run(self, done: anyio.Event) -> None:
        """Alone (no ticker): poll until ``done``, then publish the rest."""
        with anyio.CancelScope(shield=True):  # the end marker is published even when the attempt was cancelled
            while not done.is_set():
                with anyio.move_on_after(POLL_SECONDS):
                    await done.wait()
                if not done.is_set():
                    await self.poll()
            await self.finish()

    async def poll(self) -> None:
        async with self.lock:
            if self._may_publish():
                await self._guarded(self._resumed(self._publish_new))

    async def finish(self) -> None:
        if self._wrote_nothing():  # most attempts: nothing to publish, and nothing the ticker could be publishing
            self.stopped = True
            return
        async with self.lock:
            if self._may_publish():
                await self._guarded(self._resumed(self._publish_last))
            self.stopped = True

    def _wrote_nothing(self) -> bool:
        """The attempt wrote nothing and nothing of it was shown: its file is empty (it only grows while the attempt
        runs), and no publish of it failed (which would owe a line saying so)."""
        return not (self.offset or self.published or self.held or self.paused_at) and _size(self.path) == 0

    def _pause_mark(self) -> tuple[int, int]:
        return reconnection_count(route_of(self.js).nc), self.stream.returns

    def _may_publish(self) -> bool:
        return not self.stopped and (self.paused_at is None or self.paused_at != self._pause_mark())

    async def _resumed(self, publish: Callable[[], Awaitable[None]]) -> None:
        """``publish``, after a line saying the view was interrupted when it was."""
        if self.paused_at is not None:
            await self._publish_text(f"\n[plait: the live view was interrupted here; {LOGS_HINT}]\n")
            self.paused_at = None
        await publish()

    async def _guarded(self, publishing: Awaitable[None]) -> None:
        try:
            await publishing
        except Exception as exc:  # the live view is a convenience: the attempt and its stored output go on
            if self.paused_at is None and not self.stream.missing:  # a missing stream is logged once, for all
                dispatch = self.dispatch
                log.warning(
                    "live_output_paused",
                    reason=str(exc) or type(exc).__name__,
                    execution=dispatch.execution_id,
                    node=dispatch.node,
                    attempt=dispatch.attempt_id,
                )
            self.paused_at = self._pause_mark()

    async def _publish_last(self) -> None:
        """The rest of the output with the end marker: in one message when it fits; none for an attempt that wrote
        nothing and had nothing shown (a follower reads its stored, empty, output once the execution ends)."""
        size = _size(self.path)  # a local file's stat: no thread needed
        if size == self.offset and not self.held:
            if self.published or self.offset:
                await self._publish(b"", {PLAIT_OUTPUT_END: str(self.published)})
            return
        if size < self.offset or size - self.offset > CHUNK_BYTES:
            await self._publish_new()
            if self.held:
                await self._publish(self._redacted(self.held), {})
            await self._publish(b"", {PLAIT_OUTPUT_END: str(self.published)})
            return
        rest = _read(self.path, self.offset, size - self.offset)  # at most a chunk, of a local file
        self.offset += len(rest)
        last = self._redacted(self.held + rest) if self.secrets else rest
        self.held = b""
        await self._publish(last, {PLAIT_OUTPUT_END: str(self.published + len(last))})

    async def _publish_new(self) -> None:
        size = _size(self.path)  # a local file's stat: no thread needed
        if size < self.offset:  # written anew (a fresh worker ran the attempt again)
            await self._publish_text(f"\n[plait: the attempt's output started again, {self.offset:,} bytes in]\n")
            self.offset = 0
        if size - self.offset > MOST_BEHIND_BYTES:
            skipped = size - self.offset - MOST_BEHIND_BYTES
            await self._publish_text(f"\n[plait: {skipped:,} bytes not shown live; `plait logs` has them kept]\n")
            self.offset += skipped
        while self.offset < size:
            chunk = await anyio.to_thread.run_sync(_read, self.path, self.offset, min(CHUNK_BYTES, size - self.offset))
            if not chunk:
                return
            self.offset += len(chunk)
            await self._publish(self._safe(chunk), {})

    def _safe(self, chunk: bytes) -> bytes:
        """What of ``chunk`` may be shown: secrets redacted, and held back what may be a secret's first bytes (its
        rest still to come)."""
        if not self.secrets:
            return chunk
        text = self._redacted(self.held + chunk)
        keep = max(len(value) for value in self.secrets) - 1
        self.held = text[len(text) - keep :] if keep else b""
        return text[: len(text) - keep] if keep else text

    def _redacted(self, data: bytes) -> bytes:
        return secrets.redact_bytes(data, (value.decode(errors="replace") for value in self.secrets))

    async def _publish_text(self, text: str) -> None:
        await self._publish(text.encode(), {})

    async def _publish(self, data: bytes, headers: dict[str, str]) -> None:
        if not data and not headers:
            return
        dispatch = self.dispatch
        subject = subjects.live_output_subject(
            dispatch.project, dispatch.domain, dispatch.execution_id, dispatch.attempt_id
        )
        headers = {PLAIT_ATTEMPT: dispatch.attempt_id, PLAIT_OUTPUT_OFFSET: str(self.published), **headers}
        try:
            await self.js.publish(subject, data, headers=headers, stream=subjects.LIVE_OUTPUT_STREAM)
        except nats.js.errors.NoStreamResponseError:
            if not await self.stream_back():
                raise
            await self.js.publish(subject, data, headers=headers, stream=subjects.LIVE_OUTPUT_STREAM)
        self.stream.back()  # made by the operator meanwhile, when it was missing
        self.published += len(data)


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def _read(path: str, offset: int, count: int) -> bytes:
    try:
        with open(path, "rb") as file:
            file.seek(offset)
            return file.read(count)
    except FileNotFoundError:
        return b""


def live_output_directory() -> contextlib.AbstractAsyncContextManager[Path]:
    """A private folder for one executor's output files of running attempts, removed when it stops."""
    return private_folder("plait-live-")
