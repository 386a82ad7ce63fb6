"""Launch plan schedules: fire times computed purely, in time zones and across DST, and plans checked when defined."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from plait import CronSchedule, DefinitionError, FixedRate, LaunchPlan, Notify
from plait.core.model import LaunchPlanSpec
from plait.core.schedules import fire_execution_id, is_missed, kickoff_time, next_fire, next_fires
from tests import workflows

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


class TestCron:
    def test_an_hourly_schedule_fires_on_the_hour(self) -> None:
        fires = next_fires(CronSchedule("0 * * * *"), utc(2026, 5, 1, 10, 30), EPOCH, 3)
        assert fires == [utc(2026, 5, 1, 11), utc(2026, 5, 1, 12), utc(2026, 5, 1, 13)]

    def test_a_fire_is_strictly_after_the_time_given(self) -> None:
        assert next_fire(CronSchedule("0 * * * *"), utc(2026, 5, 1, 11), EPOCH) == utc(2026, 5, 1, 12)

    def test_a_daily_schedule_keeps_its_local_time_across_summer_time(self) -> None:
        paris = CronSchedule("0 2 * * *", timezone="Europe/Paris")
        winter = next_fire(paris, utc(2026, 1, 10), EPOCH)
        summer = next_fire(paris, utc(2026, 7, 9, 12), EPOCH)
        assert (winter, summer) == (utc(2026, 1, 10, 1), utc(2026, 7, 10, 0))  # 02:00 CET, 02:00 CEST

    def test_a_time_the_clock_skips_fires_once_after_the_gap(self) -> None:
        """On 2026-03-29 Paris goes from 02:00 to 03:00: 02:30 does not exist that day."""
        fires = next_fires(CronSchedule("30 2 * * *", timezone="Europe/Paris"), utc(2026, 3, 28, 12), EPOCH, 3)
        assert fires == [utc(2026, 3, 29, 1), utc(2026, 3, 30, 0, 30), utc(2026, 3, 31, 0, 30)]

    def test_a_time_the_clock_passes_twice_fires_once_a_day(self) -> None:
        """On 2026-10-25 Paris goes from 03:00 back to 02:00: 02:30 happens twice that day."""
        fires = next_fires(CronSchedule("30 2 * * *", timezone="Europe/Paris"), utc(2026, 10, 24, 12), EPOCH, 2)
        assert fires == [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]

    def test_an_hourly_schedule_fires_in_both_repeated_hours(self) -> None:
        fires = next_fires(CronSchedule("0 * * * *", timezone="Europe/Paris"), utc(2026, 10, 24, 23, 30), EPOCH, 4)
        assert fires == [utc(2026, 10, 25, 0), utc(2026, 10, 25, 1), utc(2026, 10, 25, 2), utc(2026, 10, 25, 3)]

    def test_a_bad_expression_or_zone_is_refused_when_defined(self) -> None:
        with pytest.raises(DefinitionError, match=r"cron expression '61 \* \* \* \*' is invalid"):
            CronSchedule("61 * * * *")
        with pytest.raises(DefinitionError, match=r"time zone 'Mars/Olympus' is unknown"):
            CronSchedule("0 * * * *", timezone="Mars/Olympus")


class TestFixedRate:
    def test_it_fires_every_period_from_its_activation(self) -> None:
        activated = utc(2026, 5, 1, 10, 0, 7)
        fires = next_fires(FixedRate(minutes=10), activated, activated, 3)
        assert fires == [activated + timedelta(minutes=10 * k) for k in (1, 2, 3)]

    def test_its_grid_stays_anchored_at_the_activation(self) -> None:
        activated = utc(2026, 5, 1, 10, 0, 7)
        assert next_fire(FixedRate(minutes=10), utc(2026, 5, 1, 11, 3), activated) == utc(2026, 5, 1, 11, 10, 7)

    def test_a_period_under_a_second_is_refused(self) -> None:
        with pytest.raises(DefinitionError, match=r"the period must be at least 1 second"):
            FixedRate()

    def test_its_period_adds_every_unit(self) -> None:
        assert FixedRate(days=1, hours=2, minutes=3, seconds=4).period_seconds == 93784


class TestMissedFires:
    def test_a_fire_is_missed_once_its_successor_was_due(self) -> None:
        rate, fire = FixedRate(seconds=10), EPOCH + timedelta(seconds=10)
        assert not is_missed(rate, fire, fire + timedelta(seconds=9), EPOCH)
        assert is_missed(rate, fire, fire + timedelta(seconds=10), EPOCH)

    def test_a_fire_names_one_execution_and_its_kickoff_time(self) -> None:
        fire = utc(2026, 5, 1, 10, 0, 7)
        assert fire_execution_id("etl.daily", "0123456789abcdef", fire) == "etl.daily-0123456789ab-20260501T100007Z"
        assert kickoff_time(fire) == "2026-05-01T10:00:07Z"


class TestScheduledPlans:
    def test_specs_without_schedule_or_notify_encode_as_before(self) -> None:
        """Versions are hashes of the encoded spec: an unset field is left out, so they do not change."""
        plan = LaunchPlan(workflows.add_two, "add-to-forty", default_inputs={"a": 1}, fixed_inputs={"b": 40})
        encoded = msgspec.json.decode(msgspec.json.encode(plan.spec))
        assert "schedule" not in encoded and "notify" not in encoded
        assert "notify" not in msgspec.json.decode(msgspec.json.encode(workflows.add_two.spec))

    def test_a_schedule_changes_the_version_and_travels_with_the_spec(self) -> None:
        plain = LaunchPlan(workflows.add_two, "p", default_inputs={"a": 1, "b": 2})
        hourly = LaunchPlan(workflows.add_two, "p", default_inputs={"a": 1, "b": 2}, schedule=CronSchedule("0 * * * *"))
        assert plain.spec.version != hourly.spec.version
        decoded = msgspec.json.decode(msgspec.json.encode(hourly.spec), type=LaunchPlanSpec)
        assert decoded.schedule == CronSchedule("0 * * * *")

    def test_a_scheduled_plan_must_give_every_required_input(self) -> None:
        with pytest.raises(DefinitionError, match=r"a scheduled launch has no value for input 'b'"):
            LaunchPlan(workflows.add_two, "p", default_inputs={"a": 1}, schedule=FixedRate(minutes=1))

    def test_the_kickoff_input_must_be_a_str_input(self) -> None:
        with pytest.raises(DefinitionError, match=r"kickoff_time_input 'a' must name a str input"):
            LaunchPlan(
                workflows.add_two, "p", fixed_inputs={"b": 1}, schedule=FixedRate(minutes=1, kickoff_time_input="a")
            )

    def test_notify_names_known_phases_and_a_web_url(self) -> None:
        assert Notify(on=["failed", "succeeded"]).on == ("failed", "succeeded")
        with pytest.raises(DefinitionError, match=r"phases must be among succeeded, failed, aborted"):
            Notify(on=["finished"])
        with pytest.raises(DefinitionError, match=r"webhook 'ftp://x' must be an http:// or https:// URL"):
            Notify(on=["failed"], webhook="ftp://x")


EXPRESSIONS = ["0 * * * *", "*/15 9-17 * * 1-5", "30 2 * * *", "0 0 1 * *", "5 4 * * sun"]
ZONES = ["UTC", "Europe/Paris", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]


class TestFireTimeProperties:
    @given(
        expression=st.sampled_from(EXPRESSIONS),
        zone=st.sampled_from(ZONES),
        after=st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1), timezones=st.just(UTC)),
    )
    def test_cron_fires_come_after_and_in_order(self, expression: str, zone: str, after: datetime) -> None:
        schedule = CronSchedule(expression, timezone=zone)
        fires = next_fires(schedule, after, EPOCH, 4)
        assert after < fires[0] < fires[1] < fires[2] < fires[3]
        assert all(fire.microsecond == 0 and fire.second == 0 for fire in fires)
        between = fires[0] - timedelta(seconds=1)  # the fire just before a fire is that same fire
        assert next_fire(schedule, between, EPOCH) == fires[0]

    @given(
        period=st.integers(1, 3 * 86400),
        anchor=st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)),
        offset=st.integers(0, 10**8),
    )
    def test_fixed_rate_fires_on_its_grid_within_a_period(self, period: int, anchor: datetime, offset: int) -> None:
        after = anchor + timedelta(seconds=offset)
        fire = next_fire(FixedRate(seconds=period), after, anchor)
        assert after < fire <= after + timedelta(seconds=period)
        assert (fire - anchor.replace(microsecond=0)).total_seconds() % period == 0
