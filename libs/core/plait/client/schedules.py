"""Activating and deactivating launch plan schedules, and showing their state: records appended to the plan's
activation subject, which the schedulers follow (the first fire is set by whichever replica takes the record)."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from plait.adapters.activations import activation_state, append_activation
from plait.adapters.nats_errors import as_plait_errors
from plait.client.connection import readable
from plait.client.registration import Registering
from plait.core.activations import ActivationRecord, LaunchPlanActivated, LaunchPlanDeactivated
from plait.core.schedules import Schedule, next_fires
from plait.errors import ConflictError, InputError
from plait.protocol.registry import LATEST

_TRIES = 3  # appends raced by another activation or deactivation of the same plan


class LaunchPlanSchedule(msgspec.Struct, frozen=True, kw_only=True):
    """A launch plan's schedule as the log has it: whether it runs, which version since when, and its next fires."""

    launch_plan: str
    active: bool
    version: str = ""
    since: datetime | None = None
    schedule: Schedule | None = None
    next_fires: tuple[datetime, ...] = ()


class Scheduling(Registering):
    async def activate_launch_plan(self, name: str, version: str = LATEST, *, by: str = "") -> LaunchPlanSchedule:
        """Start launching the plan (its latest version by default) on its schedule; activating another version
        replaces the active one. Raises ``NotFound`` for a plan not registered, ``InputError`` for one without a
        schedule."""
        if version == LATEST:
            version = await self.latest_version(name, "launch_plan")
        with as_plait_errors(f"activating launch plan {name}"):
            plan = await self._registry.launch_plan(self.project, self.domain, name, version)
            if not plan.schedule:
                raise InputError(f"launch plan '{name}@{version}' has no schedule to activate")
            for _ in range(_TRIES):
                record, sequence = await self._activation(name)
                if isinstance(record, LaunchPlanActivated) and record.version == version:
                    break  # active already
                activated = LaunchPlanActivated(
                    project=self.project,
                    domain=self.domain,
                    launch_plan=name,
                    version=version,
                    at=datetime.now(UTC),
                    by=by,
                )
                try:
                    await append_activation(self.js, activated, sequence)
                    break
                except ConflictError:
                    continue
        return await self.launch_plan_schedule(name)

    async def deactivate_launch_plan(self, name: str, *, by: str = "") -> LaunchPlanSchedule:
        """Stop launching the plan on its schedule: a fire still pending launches nothing."""
        with as_plait_errors(f"deactivating launch plan {name}"):
            for _ in range(_TRIES):
                record, sequence = await self._activation(name)
                if not isinstance(record, LaunchPlanActivated):
                    break  # never active, or deactivated already
                deactivated = LaunchPlanDeactivated(
                    project=self.project, domain=self.domain, launch_plan=name, at=datetime.now(UTC), by=by
                )
                try:
                    await append_activation(self.js, deactivated, sequence)
                    break
                except ConflictError:
                    continue
        return await self.launch_plan_schedule(name)

    async def launch_plan_schedule(self, name: str, fires: int = 5) -> LaunchPlanSchedule:
        """Whether the plan's schedule runs, which version, since when, and its next ``fires`` fire times."""
        with as_plait_errors(f"reading launch plan {name}"):
            record, _ = await self._activation(name)
            if not isinstance(record, LaunchPlanActivated):
                return LaunchPlanSchedule(launch_plan=name, active=False, since=record.at if record else None)
            plan = await self._registry.launch_plan(self.project, self.domain, name, record.version)
        schedule = plan.schedule or None
        upcoming = next_fires(schedule, datetime.now(UTC), record.at, fires) if schedule else []
        return LaunchPlanSchedule(
            launch_plan=name,
            active=True,
            version=record.version,
            since=record.at,
            schedule=schedule,
            next_fires=tuple(upcoming),
        )

    async def _activation(self, name: str) -> tuple[ActivationRecord | None, int]:
        what = f"reading the activation of launch plan {name}"
        with readable(what):
            try:
                return await activation_state(self.js, self.project, self.domain, name)
            except ValueError as exc:  # a name no subject can hold
                raise InputError(str(exc)) from None
