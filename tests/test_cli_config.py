"""Profiles in a config file, through the real CLI: a profile picks the deployment and the project, PLAIT_*
variables win over it, `plait config use` switches, and a bad file is one clear line."""

from __future__ import annotations

import json
import os
from pathlib import Path

from plait.client import AsyncClient
from tests.helpers.plait_command import plait_command, plait_command_async
from tests.helpers.stack import services_and_client


def write_config(path: Path, nats_url: str) -> Path:
    path.write_text(
        "# two deployments\n"
        'current = "elsewhere"\n\n'
        "[profiles.here]\n"
        f'nats_url = "{nats_url}"\n'
        'project = "profiled"\n\n'
        "[profiles.elsewhere]\n"
        'nats_url = "nats://alice:s3cret@127.0.0.1:1"\n'
        'domain = "production"\n',
        encoding="utf-8",
    )
    return path


def environment(tmp_path: Path, config: Path, **extra: str) -> dict[str, str]:
    cleared = {name: "" for name in os.environ if name.startswith("PLAIT_")}
    return {**cleared, "PLAIT_HOME": str(tmp_path / "home"), "PLAIT_CONFIG": str(config), **extra}


async def test_a_profile_picks_the_deployment_and_project_and_variables_win(
    tmp_path: Path, nats_url: str, database_url: str
) -> None:
    config = write_config(tmp_path / "config.toml", nats_url)
    env = environment(tmp_path, config)
    used = await plait_command_async(["config", "use", "here"], env)
    assert used.returncode == 0, used.stderr
    assert 'current = "here"' in config.read_text() and "# two deployments" in config.read_text()

    async with services_and_client(nats_url, database_url):
        ran = await plait_command_async(["run", "--no-follow", "examples/hello.py:greet", "--name", "profile"], env)
        assert ran.returncode == 0, ran.stderr
        async with await AsyncClient.connect(nats_url, project="profiled") as profiled:
            launched = await profiled.execution_ids()
        async with await AsyncClient.connect(nats_url) as default_project:
            elsewhere = await default_project.execution_ids()
        overridden = await plait_command_async(
            ["run", "--no-follow", "examples/hello.py:greet", "--name", "variable"], {**env, "PLAIT_PROJECT": "env"}
        )
        assert overridden.returncode == 0, overridden.stderr
        async with await AsyncClient.connect(nats_url, project="env") as env_project:
            by_variable = await env_project.execution_ids()
    assert len(launched) == 1 and launched[0] not in elsewhere
    assert len(by_variable) == 1


def test_config_show_says_where_each_setting_came_from_and_hides_passwords(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.toml", "nats://127.0.0.1:4222")
    shown = plait_command(["config", "show", "--json"], environment(tmp_path, config, PLAIT_DOMAIN="staging"))
    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout)
    rows = {row["setting"]: row for row in report["settings"]}
    assert report["profile"] == "elsewhere"
    assert rows["nats_url"] == {
        "setting": "nats_url",
        "value": "nats://alice:***@127.0.0.1:1",
        "source": "profile elsewhere",
    }
    assert (rows["domain"]["value"], rows["domain"]["source"]) == ("staging", "PLAIT_DOMAIN")
    assert (rows["project"]["value"], rows["project"]["source"]) == ("default", "default")
    assert "s3cret" not in shown.stdout

    listed = plait_command(["config", "list"], environment(tmp_path, config, PLAIT_PROFILE="here"))
    assert listed.stdout.split("\n")[:2] == ["  elsewhere", "* here"]


def test_a_bad_config_file_or_profile_is_one_line_naming_it(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[profiles.typo]\nnats_ulr = "nats://127.0.0.1:4222"\n', encoding="utf-8")
    bad_key = plait_command(["executions", "list"], environment(tmp_path, config, PLAIT_PROFILE="typo"))
    assert bad_key.returncode == 2
    assert bad_key.stderr.strip() == f"plait: InputError: {config}: profile 'typo' has an unknown setting 'nats_ulr'"

    config.write_text('[profiles.typo]\nproject = "p"\n', encoding="utf-8")
    unknown = plait_command(["config", "show"], environment(tmp_path, config, PLAIT_PROFILE="nope"))
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == f"plait: InputError: no profile 'nope' in {config} (profiles: typo)"

    config.write_text("current = [", encoding="utf-8")
    broken = plait_command(["config", "show"], environment(tmp_path, config))
    assert broken.returncode == 2 and f"cannot read the plait config file {config}" in broken.stderr
