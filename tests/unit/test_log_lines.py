"""Services of the embedded stack log to one file (their stderr appended to it): each line is written whole, so
lines of processes logging at the same moment never run into each other."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

WRITERS = 4
LINES = 1500

WRITER = """\
import sys
from plait.logging import configure_logging
import structlog
configure_logging("json", "info")
log = structlog.get_logger().bind(writer=int(sys.argv[1]))
sys.stdin.read()  # every writer starts at once
for n in range(int(sys.argv[2])):
    log.info("stopping", n=n, padding="x" * 200)
"""


def test_processes_logging_to_one_file_at_once_leave_whole_lines(tmp_path: Path) -> None:
    log_path = tmp_path / "plait.log"
    with log_path.open("ab") as log_file:
        writers = [
            subprocess.Popen(
                [sys.executable, "-c", WRITER, str(writer), str(LINES)],
                stdin=subprocess.PIPE,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
            for writer in range(WRITERS)
        ]
        for writer in writers:
            assert writer.stdin is not None
            writer.stdin.close()
        assert [writer.wait(timeout=120) for writer in writers] == [0] * WRITERS
    records = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert len(records) == WRITERS * LINES
    for writer in range(WRITERS):
        numbers = [record["n"] for record in records if record["writer"] == writer]
        assert numbers == list(range(LINES)), f"writer {writer}'s lines, in the order it wrote them"
