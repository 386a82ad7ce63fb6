"""``PLAIT_NATS_CREDS`` against a real nats-server in operator (JWT) mode: an operator, an account and a user made
here (NKeys and JWTs signed with plait.protocol.nats_jwt), the user's ``.creds`` file (its JWT and seed) read by
nats-py through plait's connection settings, and the user JWT's permissions enforced by the server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import nkeys
import pytest

from plait.adapters.connection import connect
from plait.adapters.nats_auth import NatsAuth
from plait.errors import ConnectError
from plait.protocol import nats_jwt
from plait_cli.embedded import NatsServer
from tests.helpers.secured_nats import Watched

UNLIMITED_ACCOUNT = {
    "subs": -1,
    "data": -1,
    "payload": -1,
    "imports": -1,
    "exports": -1,
    "wildcards": True,
    "conn": -1,
    "leaf": -1,
}


def key(prefix: int) -> nkeys.KeyPair:
    return nkeys.from_seed(bytearray(nats_jwt.new_seed(prefix)))


def account_jwt(account: str, name: str, operator: nkeys.KeyPair) -> str:
    claims = {"type": "account", "version": 2, "limits": UNLIMITED_ACCOUNT}
    return nats_jwt.encode({"sub": account, "name": name, "nats": claims}, operator)


def creds_file(path: Path, user_jwt: str, user: nkeys.KeyPair) -> Path:
    """A ``.creds`` file as ``nsc`` writes it: the user's JWT, then its seed."""
    path.write_text(
        f"-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n"
        f"-----BEGIN USER NKEY SEED-----\n{bytes(user.seed).decode()}\n------END USER NKEY SEED------\n"
    )
    return path


@pytest.fixture
def operator_mode(tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    """A server trusting an operator made here, and two users' .creds files: one allowed everything under
    ``allowed.>``, one whose JWT another account signed."""
    operator, user = key(nkeys.PREFIX_BYTE_OPERATOR), key(nkeys.PREFIX_BYTE_USER)
    account, system = key(nkeys.PREFIX_BYTE_ACCOUNT), key(nkeys.PREFIX_BYTE_ACCOUNT)
    account_id, system_id, user_id = (nats_jwt.public_key(each) for each in (account, system, user))
    operator_jwt = nats_jwt.encode(
        {"sub": nats_jwt.public_key(operator), "name": "plait-test", "nats": {"type": "operator", "version": 2}},
        operator,
    )
    accounts = {
        account_id: account_jwt(account_id, "tasks", operator),
        system_id: account_jwt(system_id, "SYS", operator),  # JetStream needs a system account
    }
    user_claims = nats_jwt.user_claims(
        user_id, account="", name="reader", publish=["allowed.>"], subscribe=["allowed.>", "_INBOX.>"], expires_at=0
    )
    del user_claims["aud"], user_claims["exp"]
    good = creds_file(tmp_path / "good.creds", nats_jwt.encode(user_claims, account), user)
    stranger = key(nkeys.PREFIX_BYTE_ACCOUNT)  # an account the operator never signed
    forged = creds_file(tmp_path / "forged.creds", nats_jwt.encode(user_claims, stranger), user)
    preload = "\n".join(f"  {name}: {jwt}" for name, jwt in accounts.items())
    config = "\n".join(
        [
            f"operator: {operator_jwt}",
            f"system_account: {system_id}",
            "resolver: MEMORY",
            f"resolver_preload: {{\n{preload}\n}}",
        ]
    )
    with NatsServer.start(tmp_path / "nats", extra_config=config) as server:
        yield server.url, good, forged


async def test_a_creds_file_connects_with_its_users_permissions(operator_mode: tuple[str, Path, Path]) -> None:
    url, good, _ = operator_mode
    nc = await connect(url, "test-creds", auth=NatsAuth(creds=str(good)))
    watch = Watched(nc=nc)
    nc._error_cb = watch.on_error  # the refusals this connection hears, collected for the test
    try:
        received = await nc.subscribe("allowed.echo")
        await nc.publish("allowed.echo", b"hello")
        assert (await received.next_msg(timeout=5)).data == b"hello"
        await nc.publish("forbidden.echo", b"no")
        assert "publish" in (await watch.refused("forbidden.echo")).lower()
    finally:
        await nc.close()


async def test_a_creds_file_whose_jwt_an_unknown_account_signed_is_refused(
    operator_mode: tuple[str, Path, Path],
) -> None:
    url, _, forged = operator_mode
    with pytest.raises(ConnectError, match=r"(?i)authorization violation"):
        nc = await connect(url, "test-creds", auth=NatsAuth(creds=str(forged)))
        await nc.close()
