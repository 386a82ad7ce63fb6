"""``plait config show|list|use``: the settings in effect and where each came from, and the config file's profiles."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import msgspec

from plait.profiles import active_profile, config_path, read_profiles, use_profile
from plait.settings import VARIABLES, Settings, load_settings, setting_names

COMMANDS = frozenset({"config"})
_SECRET_URLS = ("nats_url", "database_url")


def add_parsers(commands: Any) -> None:
    config = commands.add_parser(
        "config",
        help="settings in effect, and the profiles of the config file",
        description="Profiles live in PLAIT_CONFIG (default ~/.config/plait/config.toml) as [profiles.NAME] "
        "tables of settings (nats_url, project, domain, ...); PLAIT_PROFILE or the file's `current` picks one, "
        "and PLAIT_* variables win over it.",
    ).add_subparsers(dest="action", metavar="ACTION", required=True)
    show = config.add_parser("show", help="each setting in effect, and whether it came from a profile or a variable")
    show.add_argument("--json", action="store_true", help="print JSON")
    listing = config.add_parser("list", help="the config file's profiles, the one in use marked")
    listing.add_argument("--json", action="store_true", help="print JSON")
    use = config.add_parser("use", help="make PROFILE the config file's current profile")
    use.add_argument("profile", metavar="PROFILE")


def run(args: argparse.Namespace) -> int:
    environ = dict(os.environ)
    if args.action == "use":
        path = use_profile(environ, args.profile, setting_names())
        print(f"using profile {args.profile!r} ({path})")
        return 0
    if args.action == "list":
        return _list(environ, args.json)
    return _show(environ, args.json)


def _list(environ: dict[str, str], as_json: bool) -> int:
    profiles = read_profiles(config_path(environ), setting_names())
    in_use, _ = active_profile(environ, setting_names())
    if as_json:
        print(json.dumps({"file": str(profiles.path), "in_use": in_use, "profiles": sorted(profiles.profiles)}))
        return 0
    if not profiles.profiles:
        print(f"no profiles ({profiles.path} defines none)")
        return 0
    for name in sorted(profiles.profiles):
        print(f"{'*' if name == in_use else ' '} {name}")
    return 0


def _show(environ: dict[str, str], as_json: bool) -> int:
    name, profile = active_profile(environ, setting_names())
    settings = load_settings(environ, profile=profile)
    defaults = msgspec.structs.asdict(Settings())
    rows = []
    for field, value in msgspec.structs.asdict(settings).items():
        variable = VARIABLES.get(field, "")
        if variable and environ.get(variable):
            source = variable
        elif field in profile:
            source = f"profile {name}"
        else:
            source = "default" if value == defaults[field] else ""
        shown = _without_password(value) if field in _SECRET_URLS and isinstance(value, str) else value
        rows.append({"setting": field, "value": shown, "source": source})
    if as_json:
        print(json.dumps({"profile": name, "file": str(config_path(environ)), "settings": rows}))
        return 0
    print(f"profile: {name or '(none)'}  file: {config_path(environ)}")
    for row in rows:
        print(f"  {row['setting']:<28} {json.dumps(row['value']):<40} {row['source']}")
    return 0


def _without_password(urls: str) -> str:
    """``urls`` (comma-separated) with each password replaced by ``***``."""
    masked = []
    for url in urls.split(","):
        parts = urlsplit(url.strip())
        if parts.username is None and parts.password is None:
            masked.append(url.strip())
            continue
        who = f"{parts.username}:***" if parts.password is not None else "***"  # a lone user name may be a token
        netloc = f"{who}@{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")
        masked.append(urlunsplit(parts._replace(netloc=netloc)))
    return ",".join(masked)
