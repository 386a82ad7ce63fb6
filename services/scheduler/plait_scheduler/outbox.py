"""The outbox: tails decisions and publishes a dispatch record for every queued attempt.

A dispatch is derived from a stored decision, so it can never exist without one; the durable
consumer's position only moves once the dispatches are stored, so no decision loses its dispatch.
``Nats-Msg-Id`` = attempt id makes a republished dispatch a no-op.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict

import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from plait import codec
from plait.adapters import subjects
from plait.adapters.jetstream import EventStore
from plait.core.dispatch import Dispatch
from plait.core.events import ExecutionLaunched, NodeQueued
from plait.core.model import WorkflowSpec
from plait_scheduler.cache import StateCache

log = structlog.get_logger()


class Outbox:
    def __init__(self, js: JetStreamContext, store: EventStore, states: StateCache, cluster: str) -> None:
        self.js, self.store, self.states, self.cluster = js, store, states, cluster
        self._workflows: OrderedDict[str, tuple[str, str, WorkflowSpec]] = OrderedDict()
        self.dispatched = 0

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
        publishes = []
        for msg in messages:
            decision = codec.decision_decoder.decode(msg.data)
            for event in decision.events:
                if isinstance(event, ExecutionLaunched):
                    self._workflows[msg.subject] = (event.project, event.domain, event.workflow)
            queued = [e for e in decision.events if isinstance(e, NodeQueued)]
            if not queued:
                continue
            project, domain, workflow = await self._workflow_of(msg.subject)
            for event in queued:
                dispatch = Dispatch(
                    execution_id=decision.execution_id,
                    project=project,
                    domain=domain,
                    node=event.node,
                    attempt_id=event.attempt_id,
                    attempt=event.attempt,
                    task=workflow.tasks[event.task],
                    inputs=event.inputs,
                    decision_sequence=msg.metadata.sequence.stream,
                )
                publishes.append(
                    self.js.publish(
                        subjects.dispatch_subject(self.cluster, event.queue),
                        codec.encode(dispatch),
                        headers={"Nats-Msg-Id": event.attempt_id},
                        stream=subjects.DISPATCH_STREAM,
                    )
                )
        await asyncio.gather(*publishes)
        self.dispatched += len(publishes)
        for msg in messages:
            await msg.ack()
