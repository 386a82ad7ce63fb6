"""Code bundles on an executor: each bundle an attempt names downloaded from the code bucket and unpacked once into
a local cache (one folder per hash, the least recently used ones removed past ``max_bundles``), then the attempt
run importing from there. A bundle comes from a bucket anyone on the bus may write to: it is checked against its
hash and its size, and unpacked only if every member is a plain file or folder inside its root."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tarfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import anyio
import anyio.to_thread
import msgspec
import nats.errors
from nats.js import JetStreamContext

from plait.adapters.code_store import BundleUnusable, download_bundle
from plait.core.dispatch import Dispatch
from plait.core.model import TaskTarget
from plait.sdk.bundles import MAX_BUNDLE_BYTES, MAX_BUNDLE_MEMBERS
from plait_executor.attempt import AttemptOutcome, system_error
from plait_executor.backend import AttemptBackend, LocalBackend
from plait_executor.code_roots import target_in_code_root
from plait_executor.folders import private_folder

CODE_BUNDLE_UNUSABLE = "CodeBundleUnusable"
"""``error_type`` of the system error of an attempt whose code bundle cannot be downloaded or unpacked."""
MAX_CACHED_BUNDLES = 32


class CodeCache:
    """Unpacked bundles under ``directory`` (this executor's own), by hash; at most ``max_bundles`` of them, the
    least recently used removed first. Which are unpacked, and in what order they were used, is kept here: an
    attempt of a bundle already unpacked costs one ``stat``, no lock and no write."""

    def __init__(self, js: JetStreamContext, directory: Path, max_bundles: int = MAX_CACHED_BUNDLES) -> None:
        self.js = js
        self.directory = directory
        self.max_bundles = max_bundles
        self._locks: dict[str, anyio.Lock] = {}
        self._unpacked: OrderedDict[str, Path] = OrderedDict()  # least recently used first

    async def root(self, bundle_hash: str) -> Path:
        """The folder bundle ``bundle_hash`` is unpacked in, downloaded first unless cached. Raises
        ``BundleUnusable``."""
        unpacked = self._still_unpacked(bundle_hash)
        if unpacked is not None:
            return unpacked
        lock = self._locks.setdefault(bundle_hash, anyio.Lock())
        async with lock:
            unpacked = self._still_unpacked(bundle_hash)  # by the attempt this one waited for
            if unpacked is not None:
                return unpacked
            target = self.directory / bundle_hash  # a checked hash: 64 hex digits (download_bundle checks first)
            data = await download_bundle(self.js, bundle_hash, MAX_BUNDLE_BYTES)
            await anyio.to_thread.run_sync(unpack, data, target)
            self._unpacked[bundle_hash] = target
            stale = []
            while len(self._unpacked) > self.max_bundles:
                stale.append(self._unpacked.popitem(last=False)[1])
            await anyio.to_thread.run_sync(_remove, stale)
        self._locks.pop(bundle_hash, None)
        return target

    def _still_unpacked(self, bundle_hash: str) -> Path | None:
        """Where the bundle is unpacked, now its most recently used (None: not, or removed behind this executor's
        back: one ``stat``, in a folder of the local disk)."""
        unpacked = self._unpacked.get(bundle_hash)
        if unpacked is None or not os.path.isdir(unpacked):
            return None
        self._unpacked.move_to_end(bundle_hash)
        return unpacked


def _remove(folders: list[Path]) -> None:
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


def unpack(data: bytes, target: Path) -> None:
    """Unpack a bundle's archive into ``target`` (made here, complete or not at all). Raises ``BundleUnusable``
    for an archive with a member that is not a plain file or folder under its root, or that is too large."""
    partial = target.with_name(f"{target.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            members = tar.getmembers()
            _check_members(members, target.name)
            partial.mkdir(parents=True)
            tar.extractall(partial, members=members, filter="data")
        partial.rename(target)
    except tarfile.TarError as exc:
        raise BundleUnusable(f"code bundle {target.name} is not a readable archive: {exc}") from exc
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def _check_members(members: list[tarfile.TarInfo], name: str) -> None:
    if len(members) > MAX_BUNDLE_MEMBERS:
        raise BundleUnusable(
            f"code bundle {name} has {len(members):,} members, over the limit of {MAX_BUNDLE_MEMBERS:,}"
        )
    total = 0
    for member in members:
        path = PurePosixPath(member.name)
        if path.is_absolute() or ".." in path.parts or not path.parts or not path.parts[0].isdigit():
            raise BundleUnusable(f"code bundle {name}: member {member.name!r} is outside the bundle's source roots")
        if not (member.isfile() or member.isdir()):
            raise BundleUnusable(f"code bundle {name}: member {member.name!r} is not a plain file or folder")
        total += member.size
        if total > MAX_BUNDLE_BYTES:
            raise BundleUnusable(f"code bundle {name} unpacks to over {MAX_BUNDLE_BYTES:,} bytes")


async def target_of(dispatch: Dispatch, cache: CodeCache) -> tuple[TaskTarget, str | None] | AttemptOutcome:
    """The attempt's task as this process imports it (the Kubernetes task runtime runs it in-process), and the root
    of its code bundle: from the bundle, downloaded first, when it has one (else None); a system error when the
    bundle cannot be used."""
    if dispatch.code_bundle is msgspec.UNSET:
        return dispatch.task.target, None
    try:
        root = await cache.root(dispatch.code_bundle)
    except (BundleUnusable, nats.errors.Error, OSError) as exc:
        return bundle_error(exc)
    return target_in_code_root(dispatch.task.target, str(root)), str(root)


def bundle_error(exc: Exception) -> AttemptOutcome:
    reason = str(exc) if isinstance(exc, BundleUnusable) else repr(exc)
    return AttemptOutcome(error=system_error(f"the task's code cannot be loaded: {reason}", CODE_BUNDLE_UNUSABLE))


class CodeBundlesBackend:
    """A local back end whose attempts of workflows registered with a code bundle import their task from it."""

    reports_itself = False

    def __init__(self, inner: LocalBackend, cache: CodeCache) -> None:
        self.inner = inner
        self.cache = cache

    async def run(self, dispatch: Dispatch, *, on_start: Callable[[], None]) -> AttemptOutcome | None:
        if dispatch.code_bundle is msgspec.UNSET:
            return await self.inner.run(dispatch, on_start=on_start)
        try:
            root = await self.cache.root(dispatch.code_bundle)
        except (BundleUnusable, nats.errors.Error, OSError) as exc:
            on_start()  # it ends here, without a worker, but it started
            reason = str(exc) if isinstance(exc, BundleUnusable) else repr(exc)
            return AttemptOutcome(
                error=system_error(f"the task's code cannot be loaded: {reason}", CODE_BUNDLE_UNUSABLE)
            )
        return await self.inner.run(dispatch, on_start=on_start, code_root=str(root))

    async def stop(self, dispatch: Dispatch) -> str:
        return await self.inner.stop(dispatch)


def with_code_bundles(backend: AttemptBackend, cache: CodeCache) -> AttemptBackend:
    """``backend``, its attempts importing from their code bundles when it runs them in local workers (a back end
    whose attempts report themselves does this in its own runtime)."""
    return CodeBundlesBackend(backend, cache) if isinstance(backend, LocalBackend) else backend


def code_cache_directory() -> contextlib.AbstractAsyncContextManager[Path]:
    """A folder for one executor's unpacked bundles, removed when it stops."""
    return private_folder("plait-code-")
