"""Notifications of ended executions, derived from the log: the ``notifier`` consumer tails decisions and, for each
one that ends an execution whose workflow or launch plan asks to be notified of that phase, publishes an
``ExecutionNotification`` on ``plait.notify.<project>.<domain>.<execution>`` (``Nats-Msg-Id`` = the execution, so
a redelivered decision publishes it once within the duplicate window) and posts it to the webhook, if one is
configured: up to ``WEBHOOK_TRIES`` times with doubling back-off, a failure logged and counted. The webhook is
posted at least once (a replica that dies mid-way leaves the decision to be delivered again); nothing here holds up
deciding, which has its own consumer."""

from __future__ import annotations

import contextlib
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Sequence

import anyio
import msgspec
import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from plait import codec
from plait.adapters.event_log import EventLog
from plait.adapters.quarantine import UNREADABLE
from plait.adapters.registry import Registry
from plait.core.events import (
    TERMINAL_EVENTS,
    Decision,
    ExecutionAborted,
    ExecutionFailed,
    ExecutionLaunched,
    ExecutionSucceeded,
)
from plait.core.notifications import ExecutionNotification, Notify, Phase
from plait.protocol import subjects
from plait.protocol.headers import NATS_MSG_ID
from plait_scheduler.cache import Launch, StateCache
from plait_scheduler.failures import settle_derived

log = structlog.get_logger()

WEBHOOK_TRIES = 3
WEBHOOK_FIRST_RETRY_SECONDS = 0.5
WEBHOOK_TIMEOUT_SECONDS = 5.0
_encoder = msgspec.json.Encoder()


class Notifier:
    def __init__(
        self,
        js: JetStreamContext,
        store: EventLog,
        registry: Registry,
        *,
        states: StateCache | None = None,
        after_deciding_here: Callable[[str], Awaitable[None]] | None = None,
        tries: int = WEBHOOK_TRIES,
        first_retry_seconds: float = WEBHOOK_FIRST_RETRY_SECONDS,
    ) -> None:
        self.js, self.store, self.registry, self.states = js, store, registry, states
        # A decision this replica is making may reach the notifier before its end is in ``states``: waited for.
        self.after_deciding_here = after_deciding_here
        self.tries, self.first_retry_seconds = tries, first_retry_seconds
        self.published = 0
        self.posted = 0
        self.webhook_failures = 0  # webhooks given up on after every try
        self.launches_read = 0  # from the log: of executions whose end another replica stored (or long ago)

    async def handle(self, messages: Sequence[Msg]) -> None:
        """Notify of the executions these decisions end (each concurrently), then ack them."""
        if len(messages) == 1:
            await self._handle_one(messages[0])
            return
        async with anyio.create_task_group() as tg:
            for msg in messages:
                tg.start_soon(self._handle_one, msg)

    async def _handle_one(self, msg: Msg) -> None:
        try:
            if self._ends_execution(msg.data):
                await self._notify(msg.subject, codec.decision_decoder.decode(msg.data))
            await msg.ack()
        except Exception as exc:  # settled: dropped when permanent, else notified again on its next delivery
            await settle_derived(msg, exc, "notification")

    @staticmethod
    def _ends_execution(data: bytes) -> bool:
        try:
            return codec.ends_execution(data)
        except UNREADABLE:  # the outbox quarantines it; there is nothing to notify of
            return False

    async def _notify(self, subject: str, decision: Decision) -> None:
        launched = await self._launch_of(subject)
        if launched is None:
            return
        notifications = await self._notify_specs(launched)
        for event in decision.events:
            if not isinstance(event, TERMINAL_EVENTS):
                continue
            phase, error = _phase_of(event)
            wanted = [n for n in notifications if phase in n.on]
            if not wanted:
                return
            notification = ExecutionNotification(
                project=launched.project,
                domain=launched.domain,
                execution_id=launched.execution_id,
                workflow=launched.workflow,
                phase=phase,
                at=decision.at,
                launch_plan=launched.launch_plan,
                error=error,
            )
            await self._publish(notification)
            for webhook in sorted({n.webhook for n in wanted if n.webhook}):
                await self._post(webhook, notification)

    async def _launch_of(self, subject: str) -> Launch | None:
        """The execution's launch: as this replica stored its end, else from the first decision in its log."""
        if self.after_deciding_here is not None:
            await self.after_deciding_here(subject)
        ended = self.states.ended(subject) if self.states is not None else None
        if ended is not None:
            return ended
        self.launches_read += 1
        async with contextlib.aclosing(self.store.read(subject)) as decisions:
            async for stored in decisions:
                first = stored.decision.events[0] if stored.decision.events else None
                return Launch.of(first) if isinstance(first, ExecutionLaunched) else None
        return None

    async def _notify_specs(self, launched: Launch) -> list[Notify]:
        """What the workflow asks, and what the launch plan it was launched through asks."""
        found = [launched.notify] if launched.notify else []
        if launched.launch_plan:
            name, _, version = launched.launch_plan.rpartition("@")
            plan = await self.registry.launch_plan(launched.project, launched.domain, name, version)
            if plan.notify:
                found.append(plan.notify)
        return found

    async def _publish(self, notification: ExecutionNotification) -> None:
        project, domain, execution = notification.project, notification.domain, notification.execution_id
        await self.js.publish(
            subjects.notification_subject(project, domain, execution),
            _encoder.encode(notification),
            headers={NATS_MSG_ID: subjects.scoped_id(project, domain, f"{execution}:notify")},
            stream=subjects.NOTIFICATIONS_STREAM,
        )
        self.published += 1

    async def _post(self, webhook: str, notification: ExecutionNotification) -> None:
        bound = log.bind(execution=notification.execution_id, phase=notification.phase)
        body = _encoder.encode(notification)
        delay = self.first_retry_seconds
        for attempt in range(1, self.tries + 1):
            try:
                await anyio.to_thread.run_sync(_post_json, webhook, body)
            except (OSError, ValueError) as exc:  # urllib's errors (HTTP status, connection, timeout)
                bound.warning("webhook_failed", attempt=attempt, tries=self.tries, error=_reason(exc))
                if attempt < self.tries:
                    await anyio.sleep(delay)
                    delay *= 2
                continue
            self.posted += 1
            bound.info("webhook_posted", attempt=attempt)
            return
        self.webhook_failures += 1
        bound.error("webhook_given_up", tries=self.tries, failures=self.webhook_failures)


def _post_json(url: str, body: bytes) -> None:
    if not url.startswith(("http://", "https://")):  # checked at definition too; a record may have been forged
        raise ValueError("a webhook is an http:// or https:// URL")
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")  # noqa: S310  http(s) only, checked above
    with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_SECONDS) as response:  # noqa: S310  http(s) only
        response.read()


def _reason(exc: BaseException) -> str:
    """Why a post failed, without the URL (which may hold a token)."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    if isinstance(exc, urllib.error.URLError):
        return f"{type(exc.reason).__name__}: {exc.reason}"
    return type(exc).__name__


def _phase_of(event: ExecutionSucceeded | ExecutionFailed | ExecutionAborted) -> tuple[Phase, str]:
    match event:
        case ExecutionSucceeded():
            return "succeeded", ""
        case ExecutionFailed(node=node, error=error):
            return "failed", f"{node}: {error.message}"
        case ExecutionAborted(reason=reason):
            return "aborted", reason
