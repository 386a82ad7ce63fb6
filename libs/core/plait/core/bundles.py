"""Code bundles (fast registration): a workflow registered with the content hash of its source bundle, so a
worker imports its tasks from exactly the source that was registered, whatever the files say now.

The bundle hash is part of the workflow's version (the same workflow with other source is another version), not of
its tasks' versions: those stay the hash of each task's own source, so caching and unchanged tasks are unaffected.
"""

from __future__ import annotations

import re

import msgspec

from plait.core.ids import content_version
from plait.core.model import WorkflowSpec

BUNDLE_HASH = re.compile(r"[0-9a-f]{64}")
"""A bundle's name in the code bucket: the SHA-256 of its archive, in hex."""


def is_bundle_hash(name: str) -> bool:
    return BUNDLE_HASH.fullmatch(name) is not None


def bundled_spec(spec: WorkflowSpec, bundle_hash: str) -> WorkflowSpec:
    """``spec`` registered with the source bundle ``bundle_hash``: its own version, derived from the unbundled
    one and the bundle's hash."""
    if not is_bundle_hash(bundle_hash):
        raise ValueError(f"{bundle_hash!r} is not a code bundle hash (64 hex digits)")
    unbundled = msgspec.structs.replace(spec, code_bundle=msgspec.UNSET)
    return msgspec.structs.replace(
        spec, code_bundle=bundle_hash, version=content_version(unbundled.version, "code-bundle", bundle_hash)
    )
