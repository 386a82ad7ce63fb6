"""Whether a launch plan's schedule runs: its activation records (on the plan's own subject of the events log, the
last one being its state) and the command a fire of its schedule sends."""

from __future__ import annotations

from datetime import datetime

import msgspec


class LaunchPlanActivated(msgspec.Struct, frozen=True, kw_only=True, tag="launch_plan_activated.v1"):
    """From ``at`` on, version ``version`` of the launch plan fires on its schedule (replacing any earlier
    activation of the plan)."""

    project: str
    domain: str
    launch_plan: str
    version: str
    at: datetime
    by: str = ""


class LaunchPlanDeactivated(msgspec.Struct, frozen=True, kw_only=True, tag="launch_plan_deactivated.v1"):
    """From ``at`` on, the launch plan's schedule launches nothing: a fire still pending is a no-op."""

    project: str
    domain: str
    launch_plan: str
    at: datetime
    by: str = ""


ActivationRecord = LaunchPlanActivated | LaunchPlanDeactivated


class FireLaunchPlan(msgspec.Struct, frozen=True, kw_only=True, tag="fire_launch_plan.v1"):
    """A launch plan's schedule is due at ``fire_at`` (sent by a message schedule): launch the plan's execution of
    that time, if the activation at sequence ``activation`` of the plan's subject is still its state."""

    command_id: str
    project: str
    domain: str
    launch_plan: str
    version: str
    fire_at: datetime
    activation: int


def fire_command(activated: LaunchPlanActivated, activation: int, fire_at: datetime) -> FireLaunchPlan:
    """The command of the fire due at ``fire_at`` under the activation stored at sequence ``activation``."""
    return FireLaunchPlan(
        command_id=f"{activated.launch_plan}@{activated.version}/{activation}/{fire_at.timestamp():.0f}",
        project=activated.project,
        domain=activated.domain,
        launch_plan=activated.launch_plan,
        version=activated.version,
        fire_at=fire_at,
        activation=activation,
    )
