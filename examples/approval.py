"""A human in the loop: a report waits for an approval, a signal gives it a threshold, a sleep spaces the steps.

plait run --no-follow examples/approval.py:publish_report    # prints the execution id
plait signal ID threshold 10                                 # a value of the type the gate expects (int)
plait signal ID publish                                      # approve (--reject fails the execution)
"""

from datetime import timedelta

from plait import approve, sleep, task, wait_for_input, workflow


@task
def draft(rows: int, threshold: int) -> str:
    return f"{rows} rows, {max(rows - threshold, 0)} above the threshold of {threshold}"


@task
def publish(report: str) -> str:
    return f"published: {report}"


@workflow
def publish_report(rows: int = 25) -> str:
    threshold = wait_for_input("threshold", timeout=timedelta(hours=1), expected_type=int)
    report = approve(draft(rows=rows, threshold=threshold), "publish", timeout=timedelta(days=1))
    return publish(report=sleep(timedelta(seconds=1), value=report))
