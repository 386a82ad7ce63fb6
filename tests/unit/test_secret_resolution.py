"""Resolving a task's secrets: the environment first, then the secrets folder; names checked at definition; values
redacted; what a worker process is not given of its executor's environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from plait import task
from plait.errors import DefinitionError
from plait.sdk import secrets
from plait.sdk.secrets import DIR_VARIABLE, SecretMissing, env_name, redact, redact_bytes, resolve
from plait_executor.attempt import AttemptOutcome, without_secrets
from plait_executor.worker_environment import scrub


def test_the_environment_comes_before_the_secrets_folder(tmp_path: Path) -> None:
    (tmp_path / "warehouse-password").write_text("from-file\n")
    environ = {DIR_VARIABLE: str(tmp_path)}
    assert resolve("warehouse-password", environ) == "from-file"
    environ[env_name("warehouse-password")] = "from-env"
    assert env_name("warehouse-password") == "PLAIT_SECRET_WAREHOUSE_PASSWORD"
    assert resolve("warehouse-password", environ) == "from-env"


def test_a_missing_secret_names_where_it_was_looked_for_and_no_value(tmp_path: Path) -> None:
    with pytest.raises(SecretMissing) as missing:
        resolve("api.token", {DIR_VARIABLE: str(tmp_path), "PLAIT_SECRET_OTHER": "s3cr3t"})
    assert str(missing.value) == (
        f"secret 'api.token' is not set: neither the environment variable PLAIT_SECRET_API_TOKEN nor the file "
        f"{tmp_path / 'api.token'}"
    )


def test_an_attempt_reads_only_the_secrets_its_task_declared() -> None:
    with secrets.attempt_scope() as scope:
        scope["mine"] = "v"
        assert secrets.get("mine") == "v"
        with pytest.raises(SecretMissing, match="'theirs' is not one this task declared"):
            secrets.get("theirs")


def fn() -> int:
    return 1


def test_secret_names_are_checked_when_the_task_is_defined() -> None:
    with pytest.raises(DefinitionError, match="secret name 'Not_A_Name' is not a Kubernetes Secret name"):
        task(secrets=["Not_A_Name"])(fn)
    with pytest.raises(DefinitionError, match="a list of secret names, not the string"):
        task(secrets="warehouse-password")(fn)
    assert "secrets" not in task(fn).options, "no secrets: left out, so the task's version is unchanged"
    assert task(secrets=["a", "b.c", "a"])(fn).spec.secrets == ("a", "b.c")


def test_values_are_redacted_and_an_output_holding_one_fails() -> None:
    assert redact("user ada, password hunter2", ["hunter2", ""]) == "user ada, password [redacted secret]"
    assert redact_bytes(b"hunter2\nhunter2", ["hunter2"]) == b"[redacted secret]\n[redacted secret]"
    leaked = without_secrets(AttemptOutcome(outputs={"result": 'ada:"hunter2"'}), {"pw": 'ada:"hunter2"'})
    assert leaked.error is not None and leaked.error.error_type == "SecretInOutput" and leaked.outputs is None
    assert "'pw'" in leaked.error.message and "hunter2" not in leaked.error.message


def test_a_worker_is_given_no_credential_and_no_secret() -> None:
    environ = {
        "PLAIT_NATS_URL": "nats://u:p@h",
        "PLAIT_DATABASE_URL": "postgresql://u:p@h/db",
        "PLAIT_KUBERNETES_NATS_URL": "nats://h",
        "PLAIT_SECRET_X": "x",
        "PLAIT_SECRETS_DIR": "/run/secrets",
        "PLAIT_NATS_CREDS": "/creds",
        "PLAIT_LOG_LEVEL": "info",
        "PATH": "/bin",
    }
    scrub(environ)
    assert environ == {"PLAIT_LOG_LEVEL": "info", "PATH": "/bin"}
