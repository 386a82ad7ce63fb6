"""Named profiles of settings in a TOML file, the way ``kubectl`` has contexts: one per deployment.

```toml
current = "staging"

[profiles.staging]
nats_url = "nats://nats.staging:4222"
project = "ml"
domain = "staging"
```

The file is ``PLAIT_CONFIG``, else ``$XDG_CONFIG_HOME/plait/config.toml`` (``~/.config/plait/config.toml``).
The profile used is ``PLAIT_PROFILE``, else the file's ``current``. A profile's keys are settings' names (those of
``plait.settings.VARIABLES``, without ``PLAIT_``); ``PLAIT_*`` variables win over them.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from plait.errors import InputError


class ProfileFile(msgspec.Struct, frozen=True, kw_only=True):
    path: Path
    current: str = ""
    profiles: dict[str, dict[str, Any]] = {}


def config_path(environ: Mapping[str, str]) -> Path:
    if path := environ.get("PLAIT_CONFIG"):
        return Path(path).expanduser()
    base = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "plait" / "config.toml"


def read_profiles(path: Path, known: frozenset[str], *, given: bool = True) -> ProfileFile:
    """The file's profiles (none when it does not exist, or when it was not ``given`` and may not be read: the
    default path under another user's home); ``InputError`` naming the file and what is wrong."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return ProfileFile(path=path)
    except PermissionError:
        if not given:
            return ProfileFile(path=path)
        raise InputError(f"cannot read the plait config file {path}: permission denied") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"cannot read the plait config file {path}: {exc}") from None
    unknown_top = sorted(set(document) - {"current", "profiles"})
    if unknown_top:
        raise InputError(f"{path}: unknown key {unknown_top[0]!r} (expected 'current' and [profiles.NAME] tables)")
    current = document.get("current", "")
    profiles = document.get("profiles", {})
    if not isinstance(current, str) or not isinstance(profiles, dict):
        raise InputError(f"{path}: 'current' must be a profile's name and 'profiles' a table of tables")
    for name, values in profiles.items():
        if not isinstance(values, dict):
            raise InputError(f"{path}: profile {name!r} must be a table ([profiles.{name}])")
        for key in values:
            if key not in known:
                raise InputError(f"{path}: profile {name!r} has an unknown setting {key!r}")
    if current and current not in profiles:
        raise InputError(f"{path}: the current profile {current!r} is not defined")
    return ProfileFile(path=path, current=current, profiles=profiles)


def active_profile(environ: Mapping[str, str], known: frozenset[str]) -> tuple[str, dict[str, Any]]:
    """The name and settings of the profile in use (``("", {})`` when none)."""
    profiles = read_profiles(config_path(environ), known, given=bool(environ.get("PLAIT_CONFIG")))
    name = environ.get("PLAIT_PROFILE") or profiles.current
    if not name:
        return "", {}
    if name not in profiles.profiles:
        defined = ", ".join(sorted(profiles.profiles)) or "none"
        raise InputError(f"no profile {name!r} in {profiles.path} (profiles: {defined})")
    return name, profiles.profiles[name]


_CURRENT_LINE = re.compile(r"^current\s*=.*$", re.MULTILINE)


def use_profile(environ: Mapping[str, str], name: str, known: frozenset[str]) -> Path:
    """Make ``name`` the file's current profile, keeping the rest of the file as written; returns the file."""
    profiles = read_profiles(config_path(environ), known)
    if name not in profiles.profiles:
        defined = ", ".join(sorted(profiles.profiles)) or "none"
        raise InputError(f"no profile {name!r} in {profiles.path} (profiles: {defined})")
    text = profiles.path.read_text(encoding="utf-8")
    line = f"current = {json.dumps(name)}"
    text = _CURRENT_LINE.sub(line, text, count=1) if _CURRENT_LINE.search(text) else f"{line}\n{text}"
    profiles.path.write_text(text, encoding="utf-8")
    return profiles.path


__all__ = ["ProfileFile", "active_profile", "config_path", "read_profiles", "use_profile"]
