"""``plait --help`` and each command's help are read without importing what running a command needs."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = {"nats", "plait.client", "structlog", "asyncpg", "cryptography", "plait_cli.embedded"}

PROBE = """\
import sys
from plait_cli.main import main
try:
    main({argv!r})
except SystemExit as exit:
    print(exit.code, file=sys.stderr)
print(sorted({heavy!r} & set(sys.modules)), file=sys.stderr)
"""


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["executions", "list", "--help"], ["audit", "verify", "--help"], ["signal", "--help"]],
    ids=" ".join,
)
def test_help_loads_no_transport_nor_logging(argv: list[str]) -> None:
    probe = PROBE.format(argv=argv, heavy=HEAVY)
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    code, loaded = done.stderr.strip().splitlines()[-2:]
    assert code == "0"
    assert loaded == "[]"
    assert "usage: plait" in done.stdout


def test_a_command_past_its_help_still_gets_its_modules() -> None:
    probe = PROBE.format(argv=["keys", "show", "/nonexistent/key.pem"], heavy=HEAVY)
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    code, loaded = done.stderr.strip().splitlines()[-2:]
    assert code != "0"
    assert "cryptography" in loaded and "structlog" in loaded
