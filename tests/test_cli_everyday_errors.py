"""What goes wrong in a working day with the embedded stack is one line on stderr, saying what to do; what a
killed stack left behind (servers, dev.json) is found positively and cleared on the next start."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from tests.helpers.embedded_processes import (
    alive,
    command_line,
    kill_all,
    plait,
    processes_using,
    wait_for_dev,
    wait_until_gone,
)

REPO = Path(__file__).resolve().parent.parent
HELLO = ["run", "examples/hello.py:greet"]


def run_to_end(
    args: list[str], home: Path, as_user: list[str] | None = None, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PLAIT_HOME": str(home), "PLAIT_NATS_URL": "", "PLAIT_DATABASE_URL": "", **(extra_env or {})}
    command = [*(as_user or []), sys.executable, "-m", "plait_cli.main", *args]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def finish(args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    """``plait ARGS`` on ``home`` to its end; whatever it leaves running on ``home`` fails the test."""
    done = run_to_end(args, home)
    left = wait_until_gone(home, timeout=10)
    kill_all(left)
    assert not left, f"left running: {[command_line(pid) for pid in left]}"
    return done


def assert_one_line(err: str) -> None:
    assert err.startswith("plait: ") and err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err


@contextlib.contextmanager
def bystander() -> Iterator[int]:
    """A process that is not plait's (its PID stands for one reused after a killed stack's)."""
    process = subprocess.Popen(["sleep", "600"])
    try:
        yield process.pid
    finally:
        process.kill()
        process.wait()


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "home"
    yield home
    kill_all(processes_using(home))


def test_a_second_plait_dev_says_the_first_runs_and_changes_nothing(home: Path) -> None:
    dev = plait(["dev"], home)
    try:
        wait_for_dev(dev, home)
        second = run_to_end(["dev"], home)
        advertised = msgspec.json.decode((home / "dev.json").read_bytes())
        assert dev.poll() is None, "the running plait dev goes on"
    finally:
        dev.send_signal(signal.SIGINT)
        dev.communicate(timeout=30)
    assert second.returncode == 1
    assert_one_line(second.stderr)
    assert f"plait dev (PID {dev.pid}) is already running" in second.stderr
    assert advertised["pid"] == dev.pid


def test_servers_left_by_a_killed_plait_dev_are_stopped_on_the_next_start(home: Path) -> None:
    dev = plait(["dev"], home)
    try:
        wait_for_dev(dev, home)
    finally:
        dev.kill()  # no chance to stop its servers
        dev.communicate(timeout=30)
    servers = {
        Path(command_line(pid).split(b"\0")[0].decode()).name: pid
        for pid in processes_using(home)
        if alive(pid) and b"plait_cli.main" not in command_line(pid)
    }
    assert servers.keys() == {"nats-server", "postgres"}, servers
    done = finish(HELLO, home)
    assert done.returncode == 0, done.stderr
    assert done.stdout == 'result = "HELLO, WORLD! HELLO, WORLD!"\n'
    stopped = f"stopped PostgreSQL (PID {servers['postgres']}) and nats-server (PID {servers['nats-server']})"
    assert stopped in done.stderr
    assert not [pid for pid in servers.values() if alive(pid)]
    assert "Traceback" not in done.stderr


def test_a_dev_json_whose_pid_now_belongs_to_another_process_is_removed(home: Path) -> None:
    home.mkdir()
    with bystander() as pid:
        stale = {"nats_url": "nats://127.0.0.1:1", "database_url": "postgresql://postgres@127.0.0.1:1/x", "pid": pid}
        (home / "dev.json").write_text(json.dumps(stale))
        done = finish(HELLO, home)
        assert alive(pid), "a process that is not plait's is left alone"
    assert done.returncode == 0, done.stderr
    assert "starting nats-server" in done.stderr, "the stale plait dev was not used"
    assert not (home / "dev.json").exists()


def test_pid_files_naming_other_processes_are_removed_and_those_processes_left_alone(home: Path) -> None:
    postgres, nats = home / "data" / "postgres", home / "data" / "nats"
    with bystander() as pid:
        postgres.mkdir(parents=True)
        (postgres / "postmaster.pid").write_text(f"{pid}\n{postgres}\n")
        nats.mkdir(parents=True)
        (nats / f"nats-server_{pid}.ports").write_text(json.dumps({"nats": ["nats://127.0.0.1:1"]}))
        done = finish(HELLO, home)
        assert alive(pid)
    assert done.returncode == 0, done.stderr
    assert "stopped" not in done.stderr
    assert not (nats / f"nats-server_{pid}.ports").exists()


def test_the_embedded_stack_says_what_it_starts_unless_the_output_is_json(home: Path) -> None:
    told = finish(HELLO, home)
    assert told.returncode == 0, told.stderr
    steps = [line for line in told.stderr.splitlines() if line.startswith(("starting", "embedded stack ready"))]
    assert [step.split(" (")[0] for step in steps] == [
        "starting nats-server",
        "starting the scheduler and executor",
        "starting PostgreSQL",
        "starting the catalog",
        steps[-1],
    ]
    assert steps[-1].startswith("embedded stack ready in ")
    quiet = finish(["run", "--json", "examples/hello.py:greet"], home)
    assert quiet.returncode == 0, quiet.stderr
    assert json.loads(quiet.stdout)["status"] == "succeeded"
    assert "starting" not in quiet.stderr and "ready" not in quiet.stderr


def _not_root() -> list[str]:
    """A command prefix that runs the command as a user other than root, who may write anywhere."""
    if os.geteuid() != 0:
        return []
    if setpriv := shutil.which("setpriv"):
        return [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
    pytest.skip("running as root without setpriv: every folder is writable")


@pytest.mark.parametrize("kind", ["a file", "under a file", "not writable"])
def test_a_plait_home_that_cannot_hold_data_is_one_line(tmp_path: Path, kind: str) -> None:
    (tmp_path / "file").touch()
    (tmp_path / "read-only").mkdir(mode=0o555)
    homes = {"a file": tmp_path / "file", "under a file": tmp_path / "file" / "home", "not writable": tmp_path}
    home = homes[kind] / "read-only" if kind == "not writable" else homes[kind]
    for args in (HELLO, ["executions", "list"], ["dev"]):
        done = run_to_end(args, home, _not_root() if kind == "not writable" else None)
        assert done.returncode == 1
        assert_one_line(done.stderr)
        assert f"PLAIT_HOME {home} cannot hold plait's data" in done.stderr
        assert "set PLAIT_HOME to a folder you can write" in done.stderr


def test_debug_logging_shows_the_traceback_of_an_error(tmp_path: Path) -> None:
    (tmp_path / "file").touch()
    done = run_to_end(["executions", "list"], tmp_path / "file", extra_env={"PLAIT_LOG_LEVEL": "debug"})
    assert done.returncode == 1
    assert "Traceback" in done.stderr and "cannot hold plait's data" in done.stderr
