"""NATS credentials from settings: secrets read from files, contradictions refused, never a secret in an error."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from plait.adapters.nats_auth import NatsAuth, redacted, redacted_urls, tenant_inbox
from plait.errors import InputError
from plait.settings import load_settings

SECRET = "s3cr3t-do-not-show"


def test_settings_and_profiles_name_the_credentials(tmp_path: Path) -> None:
    password = tmp_path / "password"
    password.write_text(SECRET + "\n")
    environ = {"PLAIT_NATS_USER": "alpha-development", "PLAIT_NATS_PASSWORD_FILE": str(password)}
    auth = NatsAuth.of(load_settings(environ, profile={"nats_tls_hostname": "nats.example"}))
    assert auth == NatsAuth(user="alpha-development", password_file=str(password), tls_hostname="nats.example")
    assert auth.options() == {"user": "alpha-development", "password": SECRET, "tls_hostname": "nats.example"}


def test_token_nkey_and_creds_files_are_passed_on(tmp_path: Path) -> None:
    for name in ("token", "seed", "user.creds"):
        (tmp_path / name).write_text(f"{SECRET}\n")
    assert NatsAuth(token_file=str(tmp_path / "token")).options() == {"token": SECRET}
    assert NatsAuth(nkey_seed_file=str(tmp_path / "seed")).options() == {"nkeys_seed": str(tmp_path / "seed")}
    creds = NatsAuth(creds=str(tmp_path / "user.creds")).options()
    assert creds == {"user_credentials": str(tmp_path / "user.creds")}


@pytest.mark.parametrize(
    ("auth", "complaint"),
    [
        (NatsAuth(token_file="t", creds="c"), "PLAIT_NATS_TOKEN_FILE and PLAIT_NATS_CREDS are set"),
        (NatsAuth(user="u"), "PLAIT_NATS_USER and PLAIT_NATS_PASSWORD_FILE go together"),
        (NatsAuth(tls_cert="c"), "PLAIT_NATS_TLS_CERT and PLAIT_NATS_TLS_KEY go together"),
        (NatsAuth(token_file="/nonexistent/token"), "PLAIT_NATS_TOKEN_FILE names /nonexistent/token"),
        (NatsAuth(tls_ca="/nonexistent/ca.pem"), "PLAIT_NATS_TLS_CA names /nonexistent/ca.pem"),
    ],
)
def test_bad_credentials_name_the_setting(auth: NatsAuth, complaint: str) -> None:
    with pytest.raises(InputError, match=complaint):
        auth.options()


def test_a_bad_tls_file_is_an_error_that_shows_no_content(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text(SECRET)
    with pytest.raises(InputError, match="cannot load the NATS TLS files") as raised:
        NatsAuth(tls_ca=str(ca)).options()
    assert SECRET not in str(raised.value)


def test_the_default_tls_context_verifies_the_server() -> None:
    context = NatsAuth().tls_context()  # the system's CAs
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_urls_lose_their_credentials_and_clients_get_a_tenant_inbox() -> None:
    assert redacted(f"nats://alice:{SECRET}@nats-1:4222") == "nats://***@nats-1:4222"
    assert redacted(f"tls://{SECRET}@nats-1") == "tls://***@nats-1"
    assert redacted("nats://nats-1:4222") == "nats://nats-1:4222"
    assert redacted_urls(f"nats://a:{SECRET}@n1:4222, nats://n2:4222") == "nats://***@n1:4222,nats://n2:4222"
    assert tenant_inbox("team.a", "prod") == "_INBOX.team:a.prod"
