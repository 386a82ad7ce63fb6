"""The code bucket: workflows' source bundles (fast registration) in a JetStream object store, each named by the
SHA-256 of its archive. Uploading is idempotent (a bundle already there is not sent again); a download is checked
against its name and its size bound, since anyone who can write to the bucket can put anything there."""

from __future__ import annotations

import hashlib
import io

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.object_store import ObjectStore

from plait.adapters.buckets import ensure_bucket, put_object, read_object
from plait.core.bundles import is_bundle_hash
from plait.errors import PlaitError
from plait.protocol.subjects import CODE_BUCKET


class BundleUnusable(PlaitError):
    """A code bundle cannot be used: not in the code bucket, too large, damaged, or not a safe archive."""


async def ensure_code_bucket(js: JetStreamContext, replicas: int | None = None) -> ObjectStore:
    """The code bucket, created (file storage, ``replicas``, default 1) when missing."""
    return await ensure_bucket(js, CODE_BUCKET, replicas)


async def upload_bundle(js: JetStreamContext, bundle_hash: str, data: bytes) -> bool:
    """Store a bundle under its hash; False when it was there already (nothing sent)."""
    bucket = await ensure_code_bucket(js)
    try:
        await bucket.get_info(bundle_hash)
    except nats.js.errors.ObjectNotFoundError:
        await put_object(js, CODE_BUCKET, bundle_hash, data)
        return True
    return False


async def download_bundle(js: JetStreamContext, bundle_hash: str, max_bytes: int) -> bytes:
    """The archive of bundle ``bundle_hash``, checked against its hash. Raises ``BundleUnusable``."""
    if not is_bundle_hash(bundle_hash):
        raise BundleUnusable(f"code bundle {bundle_hash!r}: not a bundle hash (64 hex digits)")
    try:
        bucket = await js.object_store(CODE_BUCKET)
        info = await bucket.get_info(bundle_hash)
    except (nats.js.errors.BucketNotFoundError, nats.js.errors.ObjectNotFoundError):
        raise BundleUnusable(f"code bundle {bundle_hash} is not in the code bucket {CODE_BUCKET}") from None
    if info.size is not None and info.size > max_bytes:
        raise BundleUnusable(f"code bundle {bundle_hash} is {info.size:,} bytes, over the limit of {max_bytes:,}")
    buffer = io.BytesIO()
    try:
        await read_object(js, bucket, CODE_BUCKET, bundle_hash, buffer, info)
    except nats.js.errors.DigestMismatchError:
        raise BundleUnusable(f"code bundle {bundle_hash} in the code bucket {CODE_BUCKET} is damaged") from None
    data = buffer.getvalue()
    if len(data) > max_bytes:
        raise BundleUnusable(f"code bundle {bundle_hash} is {len(data):,} bytes, over the limit of {max_bytes:,}")
    if hashlib.sha256(data).hexdigest() != bundle_hash:
        raise BundleUnusable(f"code bundle {bundle_hash}: its content does not have that hash")
    return data
