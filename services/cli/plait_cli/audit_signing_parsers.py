"""The arguments of ``plait keys``, ``plait audit export|verify-export|checkpoints`` and of ``plait audit verify``'s
signature checks (what they do: ``plait_cli.audit_signing``, imported when one of them runs)."""

from __future__ import annotations

import argparse
from typing import Any

COMMANDS = frozenset({"keys"})
AUDIT_ACTIONS = frozenset({"export", "verify-export", "checkpoints"})


def add_parsers(commands: Any, audit: Any, verify: argparse.ArgumentParser) -> None:
    """``plait keys``, ``plait audit export|verify-export``, and the signature options of ``plait audit verify``."""
    _trust_option(verify)
    verify.add_argument("--allow-unsigned", action="store_true", help="accept records that carry no signature")
    verify.add_argument("--checkpoints", metavar="FILE", help="signed checkpoints (an export, or one per line)")
    export = audit.add_parser(
        "export",
        help="write an execution's history with its signatures and public keys to one file",
        description="Write the execution's records, as stored, with their signatures, the public keys that "
        "signed them (from the trust store) and the checkpoints given: `plait audit verify-export` checks "
        "the file with no server.",
    )
    export.add_argument("execution_id", metavar="ID")
    export.add_argument("-o", "--output", required=True, metavar="FILE")
    export.add_argument("--checkpoints", metavar="FILE", help="signed checkpoints to include")
    _trust_option(export)
    check = audit.add_parser(
        "verify-export",
        help="check an exported history offline: chain, signatures, checkpoints; exits 1 on any problem",
        description="Check FILE (from `plait audit export`) with no server. The keys trusted are those of "
        "--trust-store (or PLAIT_TRUST_STORE); without either, the keys inside the file, which proves only "
        "that the file is consistent, not who wrote it.",
    )
    check.add_argument("file", metavar="FILE")
    check.add_argument("--allow-unsigned", action="store_true", help="accept records that carry no signature")
    _trust_option(check)
    copy = audit.add_parser(
        "checkpoints",
        help="copy the signed checkpoints of the project and domain to a file (one JSON per line)",
        description="Write every signed checkpoint of the PLAIT_CHECKPOINTS stream for this project and domain to "
        "FILE, to keep where the cluster's operators cannot reach; `plait audit verify --checkpoints FILE` checks "
        "the log against it later.",
    )
    copy.add_argument("-o", "--output", required=True, metavar="FILE")
    keys = commands.add_parser("keys", help="signing keys: generate one, show its public key").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    generate = keys.add_parser(
        "generate",
        help="write a new Ed25519 signing key (PEM) and print its public key line for a trust store",
    )
    generate.add_argument("file", metavar="FILE")
    generate.add_argument("--trust-store", metavar="FILE", help="also append its public key to this trust store")
    show = keys.add_parser("show", help="print the public key line (hex and key id) of a signing key file")
    show.add_argument("file", metavar="FILE")


def _trust_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trust-store", metavar="FILE", help="public keys to accept (default: PLAIT_TRUST_STORE)")
