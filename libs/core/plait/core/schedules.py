"""Launch plan schedules and their fire times: pure (no clock), so every scheduler replica, the CLI and the tests
compute the same times. Time zones come from ``zoneinfo``; cron expressions are evaluated by ``cronsim``."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Literal, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from cronsim import CronSim, CronSimError

from plait.errors import DefinitionError

OnMissed = Literal["run", "skip"]
"""What a fire handled after its successor was due does: launch once anyway (``run``), or nothing (``skip``)."""


class CronSchedule(msgspec.Struct, frozen=True, tag_field="kind", tag="cron"):
    """Fire at the times a cron expression names (five fields: minute hour day month weekday), read in
    ``timezone``: ``CronSchedule("0 2 * * *", timezone="Europe/Paris")`` fires at 02:00 Paris time, summer and
    winter. A time the clock skips (a spring-forward hour) fires once at the first minute after the gap; a time
    the clock passes twice (autumn) fires at its first occurrence (an hourly expression fires in both hours).

    ``kickoff_time_input`` names a ``str`` input of the workflow that each fire sets to its time (RFC 3339, UTC).
    """

    expression: str
    timezone: str = "UTC"
    on_missed: OnMissed = "run"
    kickoff_time_input: str = ""

    def __post_init__(self) -> None:
        _zone(self.timezone)
        try:
            CronSim(self.expression, datetime(2000, 1, 1, tzinfo=UTC))
        except CronSimError as exc:
            raise DefinitionError(f"cron expression '{self.expression}' is invalid: {exc}") from None
        _check_on_missed(self.on_missed)


class FixedRate(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag="fixed_rate"):
    """Fire every ``days + hours + minutes + seconds``, the first one period after the plan is activated:
    ``FixedRate(minutes=10)``. Seconds are for short periods (tests); fires happen on whole seconds."""

    days: int = 0
    hours: int = 0
    minutes: int = 0
    seconds: int = 0
    on_missed: OnMissed = "run"
    kickoff_time_input: str = ""

    def __post_init__(self) -> None:
        if min(self.days, self.hours, self.minutes, self.seconds) < 0 or self.period_seconds < 1:
            raise DefinitionError(f"fixed rate of {self.period_seconds} s: the period must be at least 1 second")
        _check_on_missed(self.on_missed)

    @property
    def period_seconds(self) -> int:
        return ((self.days * 24 + self.hours) * 60 + self.minutes) * 60 + self.seconds


Schedule = CronSchedule | FixedRate


def next_fire(schedule: Schedule, after: datetime, anchor: datetime) -> datetime:
    """The first fire time strictly after ``after`` (UTC, whole seconds). ``anchor`` is when the plan was
    activated: a fixed rate fires at ``anchor + k * period``; a cron schedule ignores it."""
    after, anchor = _utc(after), _utc(anchor).replace(microsecond=0)
    match schedule:
        case FixedRate(period_seconds=period):
            periods = math.floor((after - anchor).total_seconds() / period) + 1
            return anchor + timedelta(seconds=max(periods, 1) * period)
        case CronSchedule(expression=expression, timezone=timezone):
            local = after.astimezone(_zone(timezone))
            return next(iter(CronSim(expression, local))).astimezone(UTC)


def next_fires(schedule: Schedule, after: datetime, anchor: datetime, count: int) -> list[datetime]:
    """The ``count`` fire times that follow ``after``."""
    return [time for time, _ in zip(_fires(schedule, after, anchor), range(count), strict=False)]


def _fires(schedule: Schedule, after: datetime, anchor: datetime) -> Iterator[datetime]:
    while True:
        after = next_fire(schedule, after, anchor)
        yield after


def is_missed(schedule: Schedule, fire_at: datetime, now: datetime, anchor: datetime) -> bool:
    """Whether the fire due at ``fire_at``, handled at ``now``, was missed: its successor was due by then too (the
    system was down, or no scheduler ran, through a whole period)."""
    return _utc(now) >= next_fire(schedule, fire_at, anchor)


class FireOutcome(NamedTuple):
    """What a fire handled at a given time does: launch its execution or not, and when the next fire is."""

    launch: bool
    next_fire: datetime


def fire_outcome(schedule: Schedule, fire_at: datetime, now: datetime, anchor: datetime) -> FireOutcome:
    """The fire due at ``fire_at``, handled at ``now``: it launches unless it was missed and the schedule skips
    missed fires; the next fire is the first one after both its time and now (so an outage launches at most once,
    and the chain never schedules into the past)."""
    skipped = schedule.on_missed == "skip" and is_missed(schedule, fire_at, now, anchor)
    return FireOutcome(launch=not skipped, next_fire=next_fire(schedule, max(_utc(fire_at), _utc(now)), anchor))


def fire_execution_id(launch_plan: str, version: str, fire_at: datetime) -> str:
    """The id of the execution a fire launches: the same for every replica and every redelivery of that fire."""
    return f"{launch_plan}-{version[:12]}-{_utc(fire_at):%Y%m%dT%H%M%SZ}"


def kickoff_time(fire_at: datetime) -> str:
    """A fire time as the value of a schedule's ``kickoff_time_input``."""
    return _utc(fire_at).strftime("%Y-%m-%dT%H:%M:%SZ")


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise DefinitionError(f"time zone '{name}' is unknown (an IANA name such as 'Europe/Paris')") from None


def _check_on_missed(value: str) -> None:
    if value not in ("run", "skip"):
        raise DefinitionError(f"on_missed '{value}' must be 'run' or 'skip'")


def _utc(at: datetime) -> datetime:
    """``at`` in UTC (a time read back from the log may have no zone: it is UTC)."""
    return at.astimezone(UTC) if at.tzinfo is not None else at.replace(tzinfo=UTC)
