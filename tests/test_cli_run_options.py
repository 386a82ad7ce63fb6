"""``plait run``'s own options never shadow a workflow's inputs: no prefixes, and an input wins over an option."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio.to_thread
import pytest

from tests.helpers.stack import services_and_client

REPO = Path(__file__).resolve().parent.parent
WORKFLOW = "tests/cli_input_workflows.py:named_like_options"


def plait(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "plait_cli.main", *args],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
async def nats(nats_url: str, database_url: str, tmp_path: Path) -> AsyncIterator[dict[str, str]]:
    async with services_and_client(nats_url, database_url):
        yield {"PLAIT_NATS_URL": nats_url, "PLAIT_HOME": str(tmp_path / "home")}


async def plait_async(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """In a thread, so that the services on this event loop go on serving the command."""
    return await anyio.to_thread.run_sync(plait, args, env)


async def test_inputs_named_like_option_prefixes_are_inputs(nats: dict[str, str]) -> None:
    done = await plait_async(["run", "--json", WORKFLOW, "--n", "100", "--j", "2", "--js", "3", "--o", "4"], nats)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "succeeded"
    expected = {"n": 100, "j": 2, "js": 3, "o": 4, "json": 0, "no_follow": 0}
    assert result["outputs"] == {"result": expected}


async def test_an_input_named_like_an_option_wins_after_the_workflow(nats: dict[str, str]) -> None:
    args = ["run", "--json", WORKFLOW, "--n", "1", "--j", "2", "--js", "3", "--o", "4", "--json", "5"]
    done = await plait_async([*args, "--no-follow", "6"], nats)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["outputs"] == {"result": {"n": 1, "j": 2, "js": 3, "o": 4, "json": 5, "no_follow": 6}}


async def test_plait_options_are_still_taken_after_the_workflow_when_no_input_has_their_name(
    nats: dict[str, str],
) -> None:
    done = await plait_async(["run", "tests/workflows.py:add_two", "--a", "1", "--b", "2", "--json"], nats)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["outputs"] == {"result": 3}


def test_no_option_is_matched_by_a_prefix(tmp_path: Path) -> None:
    env = {"PLAIT_HOME": str(tmp_path / "home"), "PLAIT_NATS_URL": "nats://127.0.0.1:1"}
    missing = plait(["run", WORKFLOW, "--n", "1", "--j", "2", "--js", "3", "--o", "4", "--overwrite"], env)
    assert missing.returncode == 2
    assert "unrecognized arguments: --overwrite" in missing.stderr
    abbreviated = plait(["executions", "list", "--lim", "3"], env)
    assert abbreviated.returncode == 2 and "unrecognized arguments: --lim 3" in abbreviated.stderr


def test_help_after_the_workflow_lists_its_inputs_and_the_options_left_to_plait(tmp_path: Path) -> None:
    shown = plait(["run", WORKFLOW, "--help"], {"PLAIT_HOME": str(tmp_path / "home")})
    assert shown.returncode == 0, shown.stderr
    inputs, options = shown.stdout.split("plait run options")
    assert "--json INT" in inputs and "--no-follow INT" in inputs and "--js INT" in inputs
    assert "--overwrite-cache" in options and "--json" not in options and "--no-follow" not in options


def test_version() -> None:
    from plait import __version__

    shown = plait(["--version"], {})
    assert (shown.returncode, shown.stdout) == (0, f"plait {__version__}\n")


def test_the_bash_completion_script_completes_commands_and_actions(tmp_path: Path) -> None:
    script = subprocess.run(
        [sys.executable, "-m", "plait_cli.main", "completion", "bash"], capture_output=True, text=True, check=True
    ).stdout
    (tmp_path / "plait.bash").write_text(script)

    def completions(line: str) -> list[str]:
        words = line.split(" ")
        shell = (
            f"source {tmp_path / 'plait.bash'}; COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; "
            f'COMP_LINE="{line}"; COMP_POINT={len(line)}; _shtab_plait; echo "${{COMPREPLY[@]}}"'
        )
        done = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, check=True)
        return done.stdout.split()

    assert sorted(completions("plait exe")) == ["executions", "executor"]
    assert completions("plait executions fo") == ["follow"]
    assert "--detach" in completions("plait run --de")
