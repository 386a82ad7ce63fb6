"""The outbox: tails decisions and publishes a dispatch record for every queued attempt.

A dispatch is derived from a stored decision, so it can never exist without one; the durable
consumer's position only moves once the dispatches are stored, so no decision loses its dispatch.
``Nats-Msg-Id`` = attempt id makes a republished dispatch a no-op.

The replica that appended a decision also publishes its dispatches at once (``publish_decided``), so an
attempt does not wait for the decision to travel through the outbox's consumer; the outbox then skips the
dispatches this replica already has stored, and stays the guarantee for the others (a crash between the
append and the publish, or another replica's decisions).
"""

from __future__ import annotations

import asyncio
import functools
from collections import OrderedDict
from collections.abc import Sequence

import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from plait import codec
from plait.adapters import subjects
from plait.adapters.jetstream import EventStore
from plait.core.dispatch import Dispatch
from plait.core.events import Event, ExecutionLaunched, NodeQueued
from plait.core.model import WorkflowSpec
from plait_scheduler.cache import StateCache

log = structlog.get_logger()

_REMEMBERED = 100_000  # attempt ids whose dispatch this replica stored and the outbox has not met yet


class Outbox:
    def __init__(self, js: JetStreamContext, store: EventStore, states: StateCache, cluster: str) -> None:
        self.js, self.store, self.states, self.cluster = js, store, states, cluster
        self._workflows: OrderedDict[str, tuple[str, str, WorkflowSpec]] = OrderedDict()
        self.dispatched = 0
        self._stored: OrderedDict[str, None] = OrderedDict()
        self._sending: dict[str, asyncio.Future[object]] = {}  # attempt id -> its dispatch's publish

    def _dispatch(
        self,
        execution_id: str,
        project: str,
        domain: str,
        workflow: WorkflowSpec,
        event: NodeQueued,
        decision_sequence: int,
    ) -> asyncio.Future[object]:
        dispatch = Dispatch(
            execution_id=execution_id,
            project=project,
            domain=domain,
            node=event.node,
            attempt_id=event.attempt_id,
            attempt=event.attempt,
            task=workflow.tasks[event.task],
            inputs=event.inputs,
            decision_sequence=decision_sequence,
        )
        return asyncio.ensure_future(
            self.js.publish(
                subjects.dispatch_subject(self.cluster, event.queue),
                codec.encode(dispatch),
                headers={"Nats-Msg-Id": event.attempt_id},
                stream=subjects.DISPATCH_STREAM,
            )
        )

    async def publish_decided(
        self,
        execution_id: str,
        project: str,
        domain: str,
        workflow: WorkflowSpec,
        events: Sequence[Event],
        decision_sequence: int,
    ) -> None:
        """Publish the dispatches of a decision this replica has just appended; on failure the outbox will."""
        queued = [e for e in events if isinstance(e, NodeQueued)]
        if not queued:
            return
        publishes: list[asyncio.Future[object]] = []
        for event in queued:
            publish = self._dispatch(execution_id, project, domain, workflow, event, decision_sequence)
            # Registered first, so it runs before the outbox, waiting for the same publish, looks again.
            publish.add_done_callback(functools.partial(self._sent, event.attempt_id))
            self._sending[event.attempt_id] = publish
            publishes.append(publish)
        await asyncio.wait(publishes)
        self.dispatched += len(queued)

    def _sent(self, attempt_id: str, publish: asyncio.Future[object]) -> None:
        self._sending.pop(attempt_id, None)
        if publish.cancelled() or publish.exception() is not None:
            error = "cancelled" if publish.cancelled() else repr(publish.exception())
            log.warning("dispatch_left_to_outbox", attempt=attempt_id, error=error)
            return
        self._stored[attempt_id] = None
        while len(self._stored) > _REMEMBERED:
            self._stored.popitem(last=False)

    async def _already_stored(self, attempt_id: str) -> bool:
        """True when this replica has stored the attempt's dispatch (waiting for its publish if under way)."""
        sending = self._sending.get(attempt_id)
        if sending is not None:
            await asyncio.wait([sending])  # its done callback, run first, has recorded how it went
        if attempt_id in self._stored:
            del self._stored[attempt_id]
            return True
        return False

    async def _workflow_of(self, subject: str) -> tuple[str, str, WorkflowSpec]:
        known = self._workflows.get(subject)
        if known is not None:
            return known
        state = self.states.get(subject)
        if state is not None:
            found = (state.project, state.domain, state.workflow)
        else:
            async for stored in self.store.read(subject):
                launched = next(e for e in stored.decision.events if isinstance(e, ExecutionLaunched))
                found = (launched.project, launched.domain, launched.workflow)
                break
        self._workflows[subject] = found
        while len(self._workflows) > 10_000:
            self._workflows.popitem(last=False)
        return found

    async def handle(self, messages: list[Msg]) -> None:
        """Publish the dispatches of these decision messages (pipelined), then ack them."""
        publishes: list[asyncio.Future[object]] = []
        for msg in messages:
            decision = codec.decision_decoder.decode(msg.data)
            for event in decision.events:
                if isinstance(event, ExecutionLaunched):
                    self._workflows[msg.subject] = (event.project, event.domain, event.workflow)
            queued = [e for e in decision.events if isinstance(e, NodeQueued)]
            if not queued:
                continue
            queued = [e for e in queued if not await self._already_stored(e.attempt_id)]
            if not queued:  # this replica stored them right after deciding
                continue
            project, domain, workflow = await self._workflow_of(msg.subject)
            for event in queued:
                publishes.append(
                    self._dispatch(
                        decision.execution_id,
                        project,
                        domain,
                        workflow,
                        event,
                        msg.metadata.sequence.stream,
                    )
                )
        await asyncio.gather(*publishes)
        self.dispatched += len(publishes)
        for msg in messages:
            await msg.ack()
