"""A report run on a schedule: every hour, Paris time, with a notification when a run fails.

Register the plan (``client.register(hourly)``, or ``plait run examples/scheduled.py:hourly``, which also launches it
once), then: ``plait launch-plans activate hourly-report``; ``plait launch-plans show hourly-report`` lists its next
fires; ``plait launch-plans deactivate hourly-report`` stops it. The scheduler services fire it.
"""

from __future__ import annotations

from plait import CronSchedule, FixedRate, LaunchPlan, Notify, task, workflow


@task
def count_rows(table: str, as_of: str) -> int:
    return len(table) * 1000  # stands for a query of the table as of the fire time


@task
def summarize(table: str, rows: int, as_of: str) -> str:
    return f"{table}: {rows} rows as of {as_of}"


@workflow(notify=Notify(on=["failed"]))  # every failed run is published on plait.notify.<project>.<domain>.<id>
def report(table: str, as_of: str) -> str:
    return summarize(table=table, rows=count_rows(table=table, as_of=as_of), as_of=as_of)


hourly = LaunchPlan(
    report,
    "hourly-report",
    fixed_inputs={"table": "sales"},
    schedule=CronSchedule("0 * * * *", timezone="Europe/Paris", kickoff_time_input="as_of"),
)

every_ten_minutes = LaunchPlan(
    report,
    "frequent-report",
    fixed_inputs={"table": "sales"},
    schedule=FixedRate(minutes=10, on_missed="skip", kickoff_time_input="as_of"),
    notify=Notify(on=["succeeded", "failed"], webhook="https://hooks.example.com/plait"),
)
