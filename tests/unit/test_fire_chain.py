"""The chain of fires, simulated over generated scheduler outages with the pure rule the schedulers apply
(``fire_outcome``): a fire is sent at its time, handled when a scheduler is up (a little later), and sets the next.
Each fire time is launched at most once and in order, the chain never waits for a time already past, nothing is
lost while schedulers run, and each long outage ends in exactly one missed fire: launched, or skipped."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from plait.core.schedules import CronSchedule, FixedRate, OnMissed, Schedule, fire_outcome, next_fire

ANCHOR = datetime(2026, 3, 1, tzinfo=UTC)


def period_of(schedule: Schedule) -> int:
    return schedule.period_seconds if isinstance(schedule, FixedRate) else 60


@dataclass
class Chain:
    """One plan's fires handled through ``outages`` (seconds after the anchor, [start, end))."""

    schedule: Schedule
    outages: list[tuple[float, float]]
    seed: int
    handled: list[tuple[datetime, datetime, bool]] = field(default_factory=list)  # fire time, handled at, launched

    def up_from(self, at: float) -> float:
        for start, end in self.outages:
            if start <= at < end:
                return end
        return at

    def run(self, horizon: float) -> None:
        rng = random.Random(self.seed)
        jitter = period_of(self.schedule) / 3
        pending = next_fire(self.schedule, ANCHOR, ANCHOR)
        while (pending - ANCHOR).total_seconds() < horizon:
            handled_at = self.up_from(self.up_from((pending - ANCHOR).total_seconds()) + rng.uniform(0, jitter))
            now = ANCHOR + timedelta(seconds=handled_at)
            outcome = fire_outcome(self.schedule, pending, now, ANCHOR)
            assert outcome.next_fire > now, "the next fire is always still to come"
            self.handled.append((pending, now, outcome.launch))
            pending = outcome.next_fire

    @property
    def launched(self) -> list[datetime]:
        return [fire_at for fire_at, _, launch in self.handled if launch]

    @property
    def late(self) -> list[datetime]:
        """Fires handled after their successor was due."""
        return [fire_at for fire_at, at, _ in self.handled if at >= next_fire(self.schedule, fire_at, ANCHOR)]


schedules = st.sampled_from([FixedRate(seconds=10), FixedRate(minutes=5), CronSchedule("* * * * *")])


@st.composite
def outage_plans(draw: st.DrawFn, period: int) -> tuple[list[tuple[float, float]], int]:
    """Outages apart by at least two periods of service: short ones (under a third of a period) and long ones
    (over two periods); returns them with the number of long ones."""
    outages, at, long = [], float(draw(st.integers(2, 5)) * period), 0
    for is_long in draw(st.lists(st.booleans(), max_size=6)):
        length = draw(st.floats(2.0, 8.0) if is_long else st.floats(0.0, 0.3)) * period
        outages.append((at, at + length))
        long += is_long
        at += length + draw(st.floats(2.5, 6.0)) * period
    return outages, long


@given(schedule=schedules, on_missed=st.sampled_from(["run", "skip"]), data=st.data(), seed=st.integers(0, 2**32))
def test_each_long_outage_ends_in_one_missed_fire(
    schedule: Schedule, on_missed: OnMissed, data: st.DataObject, seed: int
) -> None:
    schedule = _with(schedule, on_missed)
    period = period_of(schedule)
    outages, long = data.draw(outage_plans(period))
    chain = Chain(schedule, outages, seed)
    chain.run(horizon=(outages[-1][1] if outages else 0) + 3 * period)
    fire_times = [fire_at for fire_at, _, _ in chain.handled]
    assert fire_times == sorted(set(fire_times)), "each fire time is handled once, in order"
    assert len(chain.late) == long
    assert set(chain.late) <= set(chain.launched) if on_missed == "run" else not set(chain.late) & set(chain.launched)
    assert len(chain.launched) == len(chain.handled) - (long if on_missed == "skip" else 0)


@given(schedule=schedules, seed=st.integers(0, 2**32), periods=st.integers(1, 50))
def test_while_schedulers_run_every_fire_time_is_launched(schedule: Schedule, seed: int, periods: int) -> None:
    chain = Chain(schedule, [], seed)
    chain.run(horizon=periods * period_of(schedule))
    expected, at = [], ANCHOR
    while (at := next_fire(schedule, at, ANCHOR)) < ANCHOR + timedelta(seconds=periods * period_of(schedule)):
        expected.append(at)
    assert chain.launched == expected and chain.late == []


def _with(schedule: Schedule, on_missed: OnMissed) -> Schedule:
    if isinstance(schedule, FixedRate):
        return FixedRate(seconds=schedule.period_seconds, on_missed=on_missed)
    return CronSchedule(schedule.expression, timezone=schedule.timezone, on_missed=on_missed)
