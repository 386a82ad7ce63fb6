"""A real nats-server with deploy/nats/tenants.conf, and connections that report what the server refused them."""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import pytest
from nats.aio.client import Client as NATS

from plait.adapters.connection import connect
from plait.adapters.nats_auth import INBOX_ROOT, NatsAuth
from plait.adapters.streams import ensure_streams
from plait.protocol import nats_jwt, nats_xkey
from plait_cli.embedded import NatsServer
from plait_cli.nats_commands import ISSUER_VARIABLE, XKEY_VARIABLE

TENANTS_CONF = Path(__file__).parents[2] / "deploy" / "nats" / "tenants.conf"
PASSWORD_VARIABLES = {
    "plait-operator": "PLAIT_NATS_OPERATOR_PASSWORD",
    "plait-services": "PLAIT_NATS_SERVICES_PASSWORD",
    "plait-auditor": "PLAIT_NATS_AUDITOR_PASSWORD",
    "alpha-development": "PLAIT_NATS_ALPHA_PASSWORD",
    "beta-development": "PLAIT_NATS_BETA_PASSWORD",
}
DEADLINE = 10.0


@dataclass
class SecuredNats:
    url: str
    folder: Path

    @property
    def callout_seed_file(self) -> str:
        """The account seed of the task pods' auth callout (what an executor's PLAIT_NATS_CALLOUT_SEED_FILE names)."""
        return str(self.folder / "nats-callout.seed")

    def auth(self, user: str) -> NatsAuth:
        """The credentials of ``user`` of tenants.conf: its name and its password's file."""
        return NatsAuth(user=user, password_file=str(self.folder / f"{user}.password"))


@contextmanager
def secured_nats(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SecuredNats]:
    """nats-server with the shipped tenants.conf, each user's random password in its environment and a file."""
    folder = tmp_path / "secured"
    folder.mkdir()
    for user, variable in PASSWORD_VARIABLES.items():
        password = "pw" + secrets.token_hex(16)  # nats-server parses the variable as a value: a bare word
        monkeypatch.setenv(variable, password)
        (folder / f"{user}.password").write_text(password + "\n")
    seed = nats_jwt.new_seed()
    (folder / "nats-callout.seed").write_bytes(seed + b"\n")
    monkeypatch.setenv(ISSUER_VARIABLE, nats_jwt.public_key(nats_jwt.account_key(seed)))
    monkeypatch.setenv(XKEY_VARIABLE, nats_xkey.callout_xkey(nats_jwt.account_key(seed)))
    data = tmp_path / "nats"
    data.mkdir()
    shutil.copy(TENANTS_CONF, data / "tenants.conf")
    with NatsServer.start(data, extra_config='include "tenants.conf"') as server:
        yield SecuredNats(server.url, folder)


@dataclass
class Watched:
    """A connection of one user that collects the permission violations the server reports to it."""

    nc: NATS
    refusals: list[str] = field(default_factory=list)
    _changed: anyio.Event = field(default_factory=anyio.Event)

    async def refused(self, subject: str) -> str:
        """The server's refusal naming ``subject``, once it has come (``TimeoutError`` if it does not); nats-py
        lowercases what the server said."""
        with anyio.fail_after(DEADLINE):
            while True:
                for refusal in self.refusals:
                    if f'"{subject.lower()}"' in refusal.lower():
                        return refusal
                await self._changed.wait()

    async def on_error(self, error: Exception) -> None:
        if "permissions violation" in str(error).lower():
            self.refusals.append(str(error))
            self._changed.set()
            self._changed = anyio.Event()


async def watched(
    secured: SecuredNats, user: str, inbox_prefix: str = INBOX_ROOT, auth: NatsAuth | None = None
) -> Watched:
    """A connection as ``user`` of tenants.conf (or with ``auth``) that collects what the server refuses it."""
    watch = Watched(nc=NATS())
    await watch.nc.connect(
        secured.url,
        error_cb=watch.on_error,
        inbox_prefix=inbox_prefix,
        allow_reconnect=False,
        **(auth or secured.auth(user)).options(),
    )
    return watch


async def make_streams_as_operator(server: SecuredNats) -> None:
    """What ``plait streams ensure`` does, as the operator (the only user who may)."""
    operator = await connect(server.url, "test-operator", auth=server.auth("plait-operator"))
    try:
        await ensure_streams(operator.jetstream())
    finally:
        await operator.close()
