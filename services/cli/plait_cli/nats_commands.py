"""The parser of ``plait nats``, and running it: what the operator gives nats-server for the task pods' auth callout.
Only argparse and printing here."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from plait.settings import Settings

COMMANDS = frozenset({"nats"})
ISSUER_VARIABLE, XKEY_VARIABLE = "PLAIT_NATS_CALLOUT_ISSUER", "PLAIT_NATS_CALLOUT_XKEY"


def add_parsers(commands: Any) -> None:
    """Add ``nats`` to the ``plait`` sub-commands."""
    nats = commands.add_parser("nats", help="what nats-server needs from plait (the operator's step)").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    keys = nats.add_parser(
        "callout-keys",
        help="the public keys of the task pods' auth callout, for nats-server's environment",
        description="Print the public keys nats-server's auth_callout block (deploy/nats/tenants.conf) takes from its "
        f"environment, {ISSUER_VARIABLE} (the account key that signs the callout's answers) and {XKEY_VARIABLE} (the "
        "curve key nats-server seals each request to), both derived from the account NKey seed the executors hold "
        "(PLAIT_NATS_CALLOUT_SEED_FILE). Neither is a secret; the seed is, and is never printed.",
    )
    keys.add_argument(
        "seed_file", nargs="?", metavar="SEED_FILE", help="the seed's file (default: PLAIT_NATS_CALLOUT_SEED_FILE)"
    )
    keys.add_argument("--json", action="store_true", help="print them as one JSON object")


def run(settings: Settings, args: argparse.Namespace) -> int:
    from plait.errors import InputError
    from plait.protocol import nats_jwt, nats_xkey

    path = args.seed_file or settings.nats_callout_seed_file
    if not path:
        print("plait nats callout-keys: give SEED_FILE, or set PLAIT_NATS_CALLOUT_SEED_FILE", file=sys.stderr)
        return 2
    try:
        key = nats_jwt.read_account_key(path, "SEED_FILE" if args.seed_file else "PLAIT_NATS_CALLOUT_SEED_FILE")
    except InputError as exc:
        print(f"plait nats callout-keys: {exc}", file=sys.stderr)
        return 2
    keys = {ISSUER_VARIABLE: nats_jwt.public_key(key), XKEY_VARIABLE: nats_xkey.callout_xkey(key)}
    if args.json:
        print(json.dumps(keys))
    else:
        for variable, value in keys.items():
            print(f"{variable}={value}")
    return 0
