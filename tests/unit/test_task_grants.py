"""Task grants, the NATS JWTs of the auth callout, and the callout's answers: pure, no server."""

from __future__ import annotations

import msgspec
import nacl.public
import nkeys
import pytest

from plait.core.dispatch import Dispatch
from plait.core.ids import item_attempt_id
from plait.protocol import nats_jwt, nats_xkey, subjects
from plait_executor.task_callout import REQUEST_AUDIENCE, answer, answer_message
from plait_executor.task_grants import (
    LONGEST_GRANT,
    MARGIN_SECONDS,
    GrantRefused,
    TaskGrant,
    grant_for,
    issue,
    verify,
)
from plait_executor.task_permissions import task_permissions
from tests import kubernetes_workflows

NOW = 1_800_000_000.0
KEY = nats_jwt.account_key(nats_jwt.new_seed())
SERVER = nkeys.from_seed(bytearray(nats_jwt.new_seed(nkeys.PREFIX_BYTE_SERVER)))
USER = nats_jwt.public_key(nkeys.from_seed(bytearray(nats_jwt.new_seed(nkeys.PREFIX_BYTE_USER))))
GRANT = TaskGrant(
    project="team.a",
    domain="dev",
    execution_id="e1",
    node="load",
    attempts=("e1/load/1",),
    expires_at=int(NOW) + 600,
)


def dispatch(attempt_id: str = "e1/load/1", timeout: float | None = None) -> Dispatch:
    task = msgspec.structs.replace(kubernetes_workflows.double.spec, timeout_seconds=timeout)
    return Dispatch(
        execution_id="e1",
        project="team.a",
        domain="dev",
        node="load",
        attempt_id=attempt_id,
        attempt=1,
        task=task,
        inputs={},
        decision_sequence=1,
    )


class TestGrants:
    def test_a_grant_verifies_with_the_key_that_issued_it(self) -> None:
        assert verify(issue(GRANT, KEY), KEY, NOW) == GRANT

    def test_a_grant_lasts_its_attempts_timeout_and_a_margin(self) -> None:
        items = [dispatch(item_attempt_id("e1", "load", index, 1), timeout=60) for index in range(3)]
        grant = grant_for(items, NOW)
        assert grant.attempts == tuple(item.attempt_id for item in items)
        assert grant.expires_at == int(NOW + 60 + MARGIN_SECONDS)
        assert grant_for([dispatch()], NOW).expires_at <= NOW + LONGEST_GRANT, "no timeout: the longest grant"

    def test_an_expired_grant_is_refused(self) -> None:
        with pytest.raises(GrantRefused, match="expired"):
            verify(issue(GRANT, KEY), KEY, GRANT.expires_at + 1)

    def test_a_grant_of_another_key_is_refused(self) -> None:
        with pytest.raises(GrantRefused, match="not signed by this deployment"):
            verify(issue(GRANT, nats_jwt.account_key(nats_jwt.new_seed())), KEY, NOW)

    def test_a_changed_grant_is_refused(self) -> None:
        prefix, _, signature = issue(GRANT, KEY).split(".")
        other = issue(msgspec.structs.replace(GRANT, execution_id="e2"), KEY).split(".")[1]
        with pytest.raises(GrantRefused, match="not signed"):
            verify(f"{prefix}.{other}.{signature}", KEY, NOW)

    @pytest.mark.parametrize("token", ["", "x", "plait-grant-v1.!!.!!", "plait-grant-v1.e30.", "a.b.c"])
    def test_a_malformed_grant_is_refused_without_an_exception_of_another_kind(self, token: str) -> None:
        with pytest.raises(GrantRefused):
            verify(token, KEY, NOW)

    def test_a_grant_lasting_longer_than_any_issued_is_refused(self) -> None:
        forever = msgspec.structs.replace(GRANT, expires_at=int(NOW + LONGEST_GRANT + 10))
        with pytest.raises(GrantRefused, match="longer"):
            verify(issue(forever, KEY), KEY, NOW)


class TestPermissions:
    def test_an_attempt_may_report_itself_and_write_its_own_output_only(self) -> None:
        publish, subscribe = task_permissions(GRANT)
        scope = subjects.attempt_scope("e1/load/1")
        reports = [subject for subject in publish if subject.startswith("plait.cmd.")]
        assert reports == [f"plait.cmd.team:a.dev.e1.started.{scope}", f"plait.cmd.team:a.dev.e1.result.{scope}"]
        assert subjects.live_output_subject("team.a", "dev", "e1", "e1/load/1") in publish
        assert not any(subject.startswith("plait.out.") and subject.endswith("*") for subject in publish)
        assert not any(subject.startswith(("plait.reg.", "plait.ev.", "plait.catalog.")) for subject in publish)
        assert subscribe == [f"_INBOX.team:a.dev.{subjects.attempt_token('e1/load/1')}.>"]

    def test_a_map_jobs_pods_report_on_their_nodes_scope(self) -> None:
        items = msgspec.structs.replace(GRANT, attempts=("e1/load[0]/1", "e1/load[1]/1"), map_job=True)
        publish, _ = task_permissions(items)
        scope = subjects.node_scope("load")
        reports = [subject for subject in publish if subject.startswith("plait.cmd.")]
        assert reports == [f"plait.cmd.team:a.dev.e1.started.{scope}", f"plait.cmd.team:a.dev.e1.result.{scope}"]

    def test_only_a_dynamic_task_registers(self) -> None:
        publish, _ = task_permissions(msgspec.structs.replace(GRANT, dynamic=True))
        assert "plait.reg.team:a.dev.task.>" in publish


def request(token: str | None, *, issuer: str | None = None, signer: nkeys.KeyPair = SERVER) -> bytes:
    connect = {"protocol": 1} if token is None else {"auth_token": token, "protocol": 1}
    claims = {
        "sub": issuer or nats_jwt.public_key(KEY),
        "aud": REQUEST_AUDIENCE,
        "nats": {
            "server_id": {"name": "n1", "host": "127.0.0.1", "id": nats_jwt.public_key(SERVER)},
            "user_nkey": USER,
            "client_info": {"host": "10.0.0.7", "id": 5, "name": "plait-runtime pod"},
            "connect_opts": connect,
            "type": "authorization_request",
            "version": 2,
        },
    }
    return nats_jwt.encode(claims, signer, now=NOW).encode()


class TestCalloutAnswers:
    def test_a_valid_grant_gets_a_user_of_its_attempt_signed_by_the_account(self) -> None:
        reply = answer(request(issue(GRANT, KEY)), KEY, NOW)
        response = nats_jwt.decode(reply.response.decode(), nats_jwt.ACCOUNT_PREFIX)
        assert response["iss"] == nats_jwt.public_key(KEY)
        assert (response["sub"], response["aud"]) == (USER, nats_jwt.public_key(SERVER))
        assert response["nats"]["type"] == "authorization_response" and "error" not in response["nats"]
        user = nats_jwt.decode(response["nats"]["jwt"], nats_jwt.ACCOUNT_PREFIX)
        assert (user["sub"], user["aud"], user["exp"]) == (USER, "$G", GRANT.expires_at)
        publish, subscribe = task_permissions(GRANT)
        assert user["nats"]["pub"] == {"allow": publish} and user["nats"]["sub"] == {"allow": subscribe}
        assert reply.granted == {"execution": "e1", "node": "load", "attempts": ["e1/load/1"]}

    @pytest.mark.parametrize(
        ("token", "reason"),
        [
            (None, "no task grant"),
            ("hunter2", "not a task grant"),
            (issue(msgspec.structs.replace(GRANT, expires_at=int(NOW) - 1), KEY), "expired"),
            (issue(GRANT, nats_jwt.account_key(nats_jwt.new_seed())), "not signed"),
        ],
    )
    def test_a_missing_or_bad_grant_gets_an_error_naming_why(self, token: str | None, reason: str) -> None:
        reply = answer(request(token), KEY, NOW)
        response = nats_jwt.decode(reply.response.decode(), nats_jwt.ACCOUNT_PREFIX)
        assert reason in response["nats"]["error"] and "jwt" not in response["nats"]
        assert reason in reply.refused and reply.granted is None
        assert token is None or token not in reply.refused, "the reason never repeats the token"

    def test_a_request_not_signed_by_a_server_is_not_answered(self) -> None:
        reply = answer(request(issue(GRANT, KEY), signer=KEY), KEY, NOW)  # an account's signature, not a server's
        assert reply.response == b"" and "unreadable" in reply.refused

    def test_a_request_for_another_issuer_is_not_answered(self) -> None:
        other = nats_jwt.public_key(nats_jwt.account_key(nats_jwt.new_seed()))
        reply = answer(request(issue(GRANT, KEY), issuer=other), KEY, NOW)
        assert reply.response == b"" and "another issuer" in reply.refused

    @pytest.mark.parametrize("junk", [b"", b"\xff\xfe", b"a.b.c", b"e30.e30.e30"])
    def test_junk_is_not_answered(self, junk: bytes) -> None:
        assert answer(junk, KEY, NOW).response == b""


class TestJwt:
    def test_a_changed_payload_fails_its_signature(self) -> None:
        head, _, signature = nats_jwt.encode({"sub": USER}, KEY, now=NOW).split(".")
        other = nats_jwt.encode({"sub": "UOTHER"}, KEY, now=NOW).split(".")[1]
        with pytest.raises(nats_jwt.JwtInvalid, match="bad signature"):
            nats_jwt.decode(f"{head}.{other}.{signature}", nats_jwt.ACCOUNT_PREFIX)

    def test_a_seed_of_another_kind_is_not_an_account_key(self) -> None:
        with pytest.raises(Exception, match="account"):
            nats_jwt.account_key(nats_jwt.new_seed(nkeys.PREFIX_BYTE_USER))

    def test_encoding_sets_the_issuer_the_time_in_seconds_and_an_id(self) -> None:
        claims = nats_jwt.decode(nats_jwt.encode({"sub": USER}, KEY, now=NOW), nats_jwt.ACCOUNT_PREFIX)
        assert (claims["iss"], claims["iat"]) == (nats_jwt.public_key(KEY), int(NOW)) and claims["jti"]


class TestSealedCallout:
    """With ``auth_callout { xkey }``, nats-server seals each request to the callout's curve key (naming its own
    one-time key in ``Nats-Server-Xkey``) and opens the answer with it."""

    SERVER_CURVE = nacl.public.PrivateKey.generate()

    def sealed_request(self, token: str | None) -> tuple[bytes, dict[str, str]]:
        server_xkey = nats_xkey.encode_public(self.SERVER_CURVE.public_key)
        sealed = nats_xkey.seal(request(token), self.SERVER_CURVE, nats_xkey.callout_xkey(KEY))
        return sealed, {nats_xkey.SERVER_XKEY_HEADER: server_xkey}

    def test_a_sealed_request_gets_a_sealed_answer_only_the_server_opens(self) -> None:
        data, headers = self.sealed_request(issue(GRANT, KEY))
        assert issue(GRANT, KEY).encode() not in data
        reply = answer_message(data, headers, KEY, NOW)
        assert reply.granted is not None and reply.response.startswith(nats_xkey.SEALED_VERSION)
        opened = nats_xkey.open_sealed(reply.response, self.SERVER_CURVE, nats_xkey.callout_xkey(KEY))
        response = nats_jwt.decode(opened.decode(), nats_jwt.ACCOUNT_PREFIX)
        assert response["nats"]["type"] == "authorization_response" and response["nats"]["jwt"]
        with pytest.raises(nats_xkey.XkeyInvalid):
            nats_xkey.open_sealed(reply.response, nacl.public.PrivateKey.generate(), nats_xkey.callout_xkey(KEY))

    def test_a_request_sealed_to_another_key_or_altered_is_not_answered(self) -> None:
        data, headers = self.sealed_request(issue(GRANT, KEY))
        altered = data[:-1] + bytes([data[-1] ^ 1])
        other = nats_jwt.account_key(nats_jwt.new_seed())
        for reply in (answer_message(altered, headers, KEY, NOW), answer_message(data, headers, other, NOW)):
            assert reply.response == b"" and "unreadable authorization request" in reply.refused

    def test_an_unsealed_request_is_answered_in_the_clear(self) -> None:
        reply = answer_message(request(issue(GRANT, KEY)), None, KEY, NOW)
        assert reply.granted is not None and not reply.response.startswith(nats_xkey.SEALED_VERSION)

    def test_a_curve_key_reads_back_and_a_changed_one_is_refused(self) -> None:
        public = nats_xkey.callout_xkey(KEY)
        assert public.startswith("X") and len(public) == 56
        assert nats_xkey.encode_public(nats_xkey.decode_public(public)) == public
        assert nats_xkey.callout_xkey(KEY) == public, "derived from the seed: the same on every executor"
        changed = public[:10] + ("A" if public[10] != "A" else "B") + public[11:]
        with pytest.raises(nats_xkey.XkeyInvalid, match="checksum"):
            nats_xkey.decode_public(changed)
        with pytest.raises(nats_xkey.XkeyInvalid):
            nats_xkey.decode_public(nats_jwt.public_key(KEY))  # an account key is no curve key
