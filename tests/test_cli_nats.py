"""``plait nats callout-keys``: the public keys nats-server's auth callout block takes, from the executors' seed."""

from __future__ import annotations

import json
from pathlib import Path

import nkeys

from plait.protocol import nats_jwt, nats_xkey
from tests.helpers.plait_command import plait_command


def test_the_callout_keys_are_printed_for_nats_servers_environment_and_the_seed_is_not(tmp_path: Path) -> None:
    seed = nats_jwt.new_seed()
    path = tmp_path / "callout.seed"
    path.write_bytes(seed + b"\n")
    key = nats_jwt.account_key(seed)
    env = {"PLAIT_HOME": str(tmp_path / "home")}
    printed = plait_command(["nats", "callout-keys", str(path)], env)
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.splitlines() == [
        f"PLAIT_NATS_CALLOUT_ISSUER={nats_jwt.public_key(key)}",
        f"PLAIT_NATS_CALLOUT_XKEY={nats_xkey.callout_xkey(key)}",
    ]
    assert seed.decode() not in printed.stdout + printed.stderr
    from_setting = plait_command(["nats", "callout-keys", "--json"], {**env, "PLAIT_NATS_CALLOUT_SEED_FILE": str(path)})
    assert json.loads(from_setting.stdout)["PLAIT_NATS_CALLOUT_XKEY"] == nats_xkey.callout_xkey(key)


def test_a_missing_or_wrong_seed_is_refused_by_name(tmp_path: Path) -> None:
    env = {"PLAIT_HOME": str(tmp_path / "home")}
    missing = plait_command(["nats", "callout-keys", str(tmp_path / "nowhere.seed")], env)
    assert missing.returncode == 2 and "cannot read SEED_FILE" in missing.stderr and "nowhere.seed" in missing.stderr
    user_seed = tmp_path / "user.seed"
    user_seed.write_bytes(nats_jwt.new_seed(nkeys.PREFIX_BYTE_USER))
    wrong = plait_command(["nats", "callout-keys", str(user_seed)], env)
    assert wrong.returncode == 2 and "not an account NKey seed" in wrong.stderr
    unset = plait_command(["nats", "callout-keys"], env)
    assert unset.returncode == 2 and "PLAIT_NATS_CALLOUT_SEED_FILE" in unset.stderr
