"""Launch plan schedules: each activation sets the plan's first fire, and each fire launches the plan's execution of
that time, then sets the next fire. Fires are JetStream message schedules (``@at``, one pending per plan): the
server sends each to the ``launch-plan-fires`` work queue, which any replica takes.

The next fire is set before the launch, so that a replica dying mid-fire delays only that fire's launch (until its
redelivery), never the fires after it. A fire launches exactly once: its execution id (plan, version, fire time)
and the launch's command id are the same whoever handles it and however often, so a redelivered fire is a
duplicate launch, which changes nothing, and one handled again after the next was set (its acknowledgement lost
in a server crash) leaves the next as it is. A fire for a plan deactivated (or activated again) since it was set is a
no-op. A fire handled after its successor was due (no scheduler ran meanwhile) launches once anyway, or not at all
with ``on_missed="skip"``; either way the next fire is the first one still to come, so a long outage launches at
most once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from plait.adapters.activations import (
    activation_decoder,
    activation_state,
    cancel_fire,
    fire_decoder,
    pending_fire,
    schedule_fire,
)
from plait.adapters.commands import publish_command
from plait.adapters.quarantine import decode_or_quarantine
from plait.adapters.registry import Registry
from plait.core.activations import FireLaunchPlan, LaunchPlanActivated, fire_command
from plait.core.commands import LaunchExecution
from plait.core.schedules import Schedule, fire_execution_id, fire_outcome, kickoff_time, next_fire
from plait.errors import InputError
from plait.protocol import subjects
from plait_scheduler.failures import settle_derived, settle_failed

log = structlog.get_logger()

SCHEDULES_READER = "schedules"  # what quarantines an activation record that does not decode


class LaunchPlanSchedules:
    def __init__(self, nc: NATS, js: JetStreamContext, registry: Registry) -> None:
        self.nc, self.js, self.registry = nc, js, registry
        self.launched = 0  # fires this replica launched (a redelivered one counts again)
        self.skipped = 0  # missed fires of plans that skip them
        self.ignored = 0  # fires of plans deactivated or activated again since

    async def handle_activations(self, messages: Sequence[Msg]) -> None:
        """Set the first fire of each activation that is still its plan's state; cancel the pending fire of each
        deactivation that is. An older record changes nothing: the records after it did their own work."""
        for msg in messages:
            try:
                record = await decode_or_quarantine(self.js, SCHEDULES_READER, msg, activation_decoder.decode)
                if record is not None:
                    _, sequence = await activation_state(self.js, record.project, record.domain, record.launch_plan)
                    if sequence == msg.metadata.sequence.stream:
                        if isinstance(record, LaunchPlanActivated):
                            await self._set_first_fire(record, sequence)
                        else:
                            await cancel_fire(self.js, record.project, record.domain, record.launch_plan)
                await msg.ack()
            except Exception as exc:  # settled: dropped when permanent, else done again on its next delivery
                await settle_derived(msg, exc, "activation")

    async def _set_first_fire(self, activated: LaunchPlanActivated, sequence: int) -> None:
        plan = await self.registry.launch_plan(
            activated.project, activated.domain, activated.launch_plan, activated.version
        )
        if not plan.schedule:
            return
        now = datetime.now(UTC)
        first = next_fire(plan.schedule, max(activated.at, now), activated.at)
        await schedule_fire(self.js, fire_command(activated, sequence, first), now)
        log.info("launch_plan_activated", launch_plan=activated.launch_plan, version=activated.version, first=first)

    async def handle_fires(self, messages: Sequence[Msg]) -> None:
        for msg in messages:
            command_id = ""
            try:
                fire = fire_decoder.decode(msg.data)
                command_id = fire.command_id
                if msg.subject != _fire_subject_of(fire):
                    raise InputError(f"fire of launch plan {fire.launch_plan} was sent on subject {msg.subject}")
                await self._fire(fire)
                await msg.ack()
            except Exception as exc:  # settled: dead-lettered or retried, never lost
                await settle_failed(self.nc, self.js, msg, command_id, exc)

    async def _fire(self, fire: FireLaunchPlan) -> None:
        bound = log.bind(launch_plan=fire.launch_plan, version=fire.version, fire_at=fire.fire_at.isoformat())
        record, sequence = await activation_state(self.js, fire.project, fire.domain, fire.launch_plan)
        if not isinstance(record, LaunchPlanActivated) or sequence != fire.activation:
            self.ignored += 1
            reason = "activated again since" if isinstance(record, LaunchPlanActivated) else "deactivated"
            bound.info("launch_plan_fire_ignored", reason=reason)
            return
        plan = await self.registry.launch_plan(fire.project, fire.domain, fire.launch_plan, fire.version)
        if not plan.schedule:
            return
        now = datetime.now(UTC)
        outcome = fire_outcome(plan.schedule, fire.fire_at, now, record.at)
        pending = await pending_fire(self.js, fire.project, fire.domain, fire.launch_plan)
        if pending is None or pending.activation != sequence or pending.fire_at <= fire.fire_at:
            await schedule_fire(self.js, fire_command(record, sequence, outcome.next_fire), now)
        # else a fire handled before, whose acknowledgement the server lost (it crashed): the fire after it is set
        if not outcome.launch:
            self.skipped += 1
            bound.info("launch_plan_fire_skipped", reason="missed")
            return
        execution_id = await self._launch(fire, plan.schedule)
        self.launched += 1
        bound.info("launch_plan_fired", execution=execution_id)

    async def _launch(self, fire: FireLaunchPlan, schedule: Schedule) -> str:
        """Publish the launch of the fire's execution; returns its id (the same for every handling of the fire)."""
        execution_id = fire_execution_id(fire.launch_plan, fire.version, fire.fire_at)
        inputs = {schedule.kickoff_time_input: kickoff_time(fire.fire_at)} if schedule.kickoff_time_input else {}
        launch = LaunchExecution(
            command_id=f"{execution_id}:launch",
            execution_id=execution_id,
            project=fire.project,
            domain=fire.domain,
            inputs=inputs,
            launched_by=f"schedule of {fire.launch_plan}",
            launch_plan=fire.launch_plan,
            launch_plan_version=fire.version,
        )
        await publish_command(self.js, launch, fire.project, fire.domain)
        return execution_id


def _fire_subject_of(fire: FireLaunchPlan) -> str:
    try:
        return subjects.fire_subject(fire.project, fire.domain, fire.launch_plan)
    except ValueError:  # a name no subject can hold
        return ""
