"""``plait launch-plans activate|deactivate NAME``: start and stop a launch plan's schedule (``show`` prints its
state and next fires, with the plan's spec)."""

from __future__ import annotations

import argparse
from zoneinfo import ZoneInfo

from plait.client import AsyncClient, LaunchPlanSchedule
from plait.core.schedules import CronSchedule
from plait.settings import Settings
from plait_cli.catalog_session import console, print_json, when
from plait_cli.stack import nats_for_command


async def run(settings: Settings, args: argparse.Namespace) -> int:
    async with nats_for_command(settings, services=()) as nats_url:
        async with await AsyncClient.connect(nats_url, settings.project, settings.domain) as client:
            if args.action == "activate":
                schedule = await client.activate_launch_plan(args.name, args.version, by=settings.replica_name)
            else:
                schedule = await client.deactivate_launch_plan(args.name, by=settings.replica_name)
    if args.json:
        print_json(schedule)
    else:
        print_schedule(schedule)
    return 0


def print_schedule(schedule: LaunchPlanSchedule) -> None:
    out = console()
    if not schedule.active:
        since = f" since {when(schedule.since)}" if schedule.since else ""
        out.print(f"schedule: inactive{since}", highlight=False)
        return
    out.print(f"schedule: active, version {schedule.version} since {when(schedule.since)} UTC", highlight=False)
    out.print(f"  {schedule.schedule}", highlight=False)
    zone = schedule.schedule.timezone if isinstance(schedule.schedule, CronSchedule) else "UTC"
    for fire in schedule.next_fires:
        local = "" if zone == "UTC" else f" ({when(fire.astimezone(ZoneInfo(zone)))} {zone})"
        out.print(f"  next: {when(fire)} UTC{local}", highlight=False)
