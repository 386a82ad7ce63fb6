"""A worker process holds no credential of its executor and no secret but its attempt's own."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from plait.sdk.hints import decode_value
from plait.sdk.loader import load_module
from plait_executor import WorkerPool


async def test_a_task_sees_no_executor_credential_and_only_its_own_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLAIT_NATS_URL", "nats://executor:pa55word@127.0.0.1:4222")
    monkeypatch.setenv("PLAIT_DATABASE_URL", "postgresql://plait:pa55word@127.0.0.1/plait")
    monkeypatch.setenv("PLAIT_SECRET_OTHER_TENANTS_KEY", "not-yours")
    monkeypatch.setenv("PLAIT_SECRETS_DIR", str(tmp_path))
    monkeypatch.setenv("PLAIT_LOG_LEVEL", "info")
    credentials = {  # every way the executor may authenticate to NATS or sign, each a file it can read
        "PLAIT_NATS_PASSWORD_FILE",
        "PLAIT_NATS_TOKEN_FILE",
        "PLAIT_NATS_NKEY_SEED_FILE",
        "PLAIT_NATS_CREDS",
        "PLAIT_NATS_TLS_KEY",
        "PLAIT_NATS_CALLOUT_SEED_FILE",
        "PLAIT_SIGNING_KEY_FILE",
    }
    for variable in credentials:
        monkeypatch.setenv(variable, str(tmp_path / variable.lower()))
    module = f"environment_{uuid.uuid4().hex[:12]}"
    path = tmp_path / f"{module}.py"
    path.write_text(
        "import os\n\nfrom plait import task\nfrom plait.sdk import secrets\n\n\n"
        "@task(secrets=['mine'])\ndef seen() -> list[str]:\n"
        "    assert secrets.get('mine') == 'my-value'\n"
        "    return sorted(name for name in os.environ if name.startswith('PLAIT_'))\n"
    )
    spec = load_module(module, str(path)).seen.spec
    async with WorkerPool(1, start_method="spawn") as pool:  # spawned now: it starts from this environment
        outcome = await pool.run(spec.target, {}, version=spec.version, secrets={"mine": "my-value"})
    assert outcome.error is None, outcome.error
    assert outcome.outputs is not None
    seen = decode_value(outcome.outputs["result"], list[str])
    assert "PLAIT_LOG_LEVEL" in seen, "other settings are kept"
    withheld = {"PLAIT_NATS_URL", "PLAIT_DATABASE_URL", "PLAIT_SECRET_OTHER_TENANTS_KEY", "PLAIT_SECRETS_DIR"}
    withheld |= credentials
    assert withheld.isdisjoint(seen), seen
