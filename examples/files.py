"""Files between tasks: one task writes a report, another counts its lines; the bytes go through the values bucket.

plait run examples/files.py:report_lines --lines 1000
"""

import tempfile
from pathlib import Path

from plait import File, task, workflow


@task
def write_report(lines: int) -> File:
    path = Path(tempfile.mkdtemp(prefix="report-")) / "report.txt"
    path.write_text("".join(f"line {index}\n" for index in range(lines)))
    return File(str(path))


@task
def count_lines(report: File) -> int:
    return len(Path(report.path).read_text().splitlines())


@workflow
def report_lines(lines: int = 10) -> int:
    return count_lines(report=write_report(lines=lines))


@workflow
def report(lines: int = 10) -> File:
    return write_report(lines=lines)
