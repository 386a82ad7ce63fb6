"""The values bucket: values too large for an event, and the bytes of ``File`` and ``Directory`` values, in a
JetStream object store, each object named by its content hash.

``ValueStore.store`` turns a value (its builtin encoding) into what an event carries: every file and directory
uploaded and replaced by a ``ValueRef``, then, when the value's encoding is over the inline limit, its large parts
(the items of a list, the values of a mapping) stored first, and the value itself if it is still too large.
``ValueStore.load`` does the reverse, downloading files and directories under a local directory. Storing is
idempotent: an object already in the bucket is not uploaded again.
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import IO, Any, Protocol

import anyio
import anyio.to_thread
import msgspec
import nats.errors
import nats.js.errors
import xxhash
from nats.js import JetStreamContext
from nats.js.object_store import ObjectStore

from plait.adapters.buckets import delete_object, ensure_bucket, put_object, read_object
from plait.core.ids import canonical_encoding, encoding_hash
from plait.core.values import (
    DEFAULT_INLINE_VALUE_LIMIT,
    FILE_KINDS,
    FRAMES_FOLDER_PREFIX,
    TAG_FIELD,
    ValueKind,
    ValueRef,
    as_ref,
    item_index,
    list_ref,
)
from plait.errors import PlaitError
from plait.protocol.subjects import VALUES_BUCKET

_READ_CHUNK = 1024 * 1024
_OFF_LOOP_BYTES = 1024 * 1024  # encoded or decoded in a worker thread, not to stall the event loop
_REF_BYTES = 160  # about the encoding of a reference: storing a part this small shrinks nothing
KEPT_LISTS_BYTES = 256 * 1024 * 1024
"""Encoded bytes of the stored lists a ``ValueStore`` keeps decoded for the map items that read their items."""


class ValueMissing(PlaitError):
    """A reference names an object that is not in the values bucket (deleted, or never stored)."""


class ValueUnstorable(PlaitError):
    """A value cannot be stored: a ``File`` or ``Directory`` whose path cannot be read, say."""


async def ensure_values_bucket(js: JetStreamContext, replicas: int | None = None) -> ObjectStore:
    """The values bucket, created (file storage, ``replicas``, default 1) when missing."""
    return await ensure_bucket(js, VALUES_BUCKET, replicas)


class Objects(Protocol):
    """Where stored values' objects live, by name: the JetStream bucket, or a dict in memory (the simulator's)."""

    async def has(self, name: str) -> bool: ...

    async def put(self, name: str, data: IO[bytes]) -> None: ...

    async def get(self, name: str, into: IO[bytes]) -> bool:
        """Write the object into ``into``; False when there is no such object."""
        ...

    async def delete(self, name: str) -> None: ...


class JetStreamObjects:
    """The values bucket, a JetStream object store, written and read as `plait.adapters.buckets` does."""

    def __init__(self, js: JetStreamContext) -> None:
        self.js = js
        self._bucket: ObjectStore | None = None

    async def _objects(self) -> ObjectStore:
        if self._bucket is None:
            self._bucket = await ensure_values_bucket(self.js)
        return self._bucket

    async def has(self, name: str) -> bool:
        try:
            await (await self._objects()).get_info(name)
        except nats.js.errors.ObjectNotFoundError:
            return False
        return True

    async def put(self, name: str, data: IO[bytes]) -> None:
        await self._objects()
        await put_object(self.js, VALUES_BUCKET, name, data)  # a name is its content's hash: a second copy is alike

    async def get(self, name: str, into: IO[bytes]) -> bool:
        try:
            await read_object(self.js, await self._objects(), VALUES_BUCKET, name, into)
        except nats.js.errors.ObjectNotFoundError:
            return False
        except nats.js.errors.DigestMismatchError:
            raise ValueMissing(f"object {name} in the values bucket {VALUES_BUCKET} is damaged") from None
        return True

    async def delete(self, name: str) -> None:
        await delete_object(self.js, VALUES_BUCKET, name)


class InMemoryObjects:
    """``Objects`` in a dict: the same contract, no server (the simulator's bucket)."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    async def has(self, name: str) -> bool:
        return name in self.objects

    async def put(self, name: str, data: IO[bytes]) -> None:
        self.objects[name] = data.read()

    async def get(self, name: str, into: IO[bytes]) -> bool:
        if name not in self.objects:
            return False
        into.write(self.objects[name])
        return True

    async def delete(self, name: str) -> None:
        self.objects.pop(name, None)


class ValueStore:
    """Values in and out of the values bucket (``objects``); values whose encoding is at most ``inline_limit``
    bytes stay inline (files and directories never do)."""

    def __init__(self, objects: Objects, inline_limit: int = DEFAULT_INLINE_VALUE_LIMIT) -> None:
        self.objects = objects
        self.inline_limit = inline_limit
        self._lists: dict[str, list[Any]] = {}  # stored lists whose items were read lately, by hash (oldest first)
        self._kept_sizes: dict[str, int] = {}
        self._lists_lock = anyio.Lock()

    @classmethod
    def on_jetstream(cls, js: JetStreamContext, inline_limit: int = DEFAULT_INLINE_VALUE_LIMIT) -> ValueStore:
        return cls(JetStreamObjects(js), inline_limit)

    async def store(self, value: Any, inline_limit: int | None = None) -> Any:
        """``value`` as an event carries it: its files and directories, and its large parts, as references
        (``inline_limit``: this value's own, in place of the store's)."""
        return await self._offload(await self._upload_paths(value), inline_limit or self.inline_limit)

    async def store_all(self, values: dict[str, Any], inline_limit: int | None = None) -> dict[str, Any]:
        return {name: await self.store(value, inline_limit) for name, value in values.items()}

    async def load(self, value: Any, workdir: Path) -> Any:
        """``value`` with every reference replaced by what it names: a value, or a ``File``/``Directory`` at a local
        path under ``workdir``. Raises ``ValueMissing`` when an object is not in the bucket."""
        ref = as_ref(value)
        if ref is not None:
            return await self._load_ref(ref, workdir, item_index(value))
        if isinstance(value, list):
            return [await self.load(item, workdir) for item in value]
        if isinstance(value, dict):
            return {key: await self.load(item, workdir) for key, item in value.items()}
        return value

    async def load_all(self, values: dict[str, Any], workdir: Path) -> dict[str, Any]:
        return {name: await self.load(value, workdir) for name, value in values.items()}

    async def put_encoded(self, ref: ValueRef, encoding: bytes) -> None:
        """Store a value's canonical ``encoding`` under ``ref`` (made from it), unless it is stored already."""
        await self._put(ref, io.BytesIO(encoding))

    async def delete(self, ref: ValueRef) -> None:
        """Remove the object ``ref`` names (an operator's action, and the tests')."""
        await self.objects.delete(ref.object_name)

    async def _offload(self, value: Any, limit: int) -> Any:
        """Inline when small enough; else a list or mapping keeps its shape with its largest parts stored, so a map
        over a list still finds its items in the event, and only when that is not enough is it stored whole."""
        if as_ref(value) is not None:
            return value
        if isinstance(value, str | bytes) and len(value) > _OFF_LOOP_BYTES:  # the common large value
            encoding = await anyio.to_thread.run_sync(canonical_encoding, value)
        else:
            encoding = canonical_encoding(value)
        if len(encoding) <= limit:
            return value
        if isinstance(value, list):
            items = await self._shrink(dict(enumerate(value)), limit)
            value = [items[index] for index in range(len(value))]
        elif isinstance(value, dict):
            value = await self._shrink(value, limit)
        else:
            return await self._put_encoding(encoding)
        encoding = canonical_encoding(value)
        if len(encoding) <= limit:
            return value
        return await self._put_encoding(encoding, len(value) if isinstance(value, list) else -1)

    async def _shrink(self, parts: dict[Any, Any], limit: int) -> dict[Any, Any]:
        """``parts`` with each one over the limit stored, then the largest of the rest, until their container's
        encoding is within the limit (counted from above) or what is left is no larger than a reference."""
        parts = {key: await self._offload(part, limit) for key, part in parts.items()}
        sizes = {key: len(canonical_encoding(part)) for key, part in parts.items()}
        size = sum(sizes.values()) + sum(len(str(key)) + 4 for key in parts)
        for key in sorted(sizes, key=sizes.__getitem__, reverse=True):
            if size <= limit or sizes[key] <= _REF_BYTES:
                break
            if as_ref(parts[key]) is None:
                parts[key] = await self._put_encoding(canonical_encoding(parts[key]))
                size -= sizes[key] - len(canonical_encoding(parts[key]))
        return parts

    async def _put_encoding(self, encoding: bytes, items: int = -1) -> dict[str, Any]:
        """Store an encoding; its reference (saying how many ``items`` a stored list has, when one is given)."""
        ref = ValueRef(hash=encoding_hash(encoding), size=len(encoding))
        await self._put(ref, io.BytesIO(encoding))
        return list_ref(ref, items) if items >= 0 else msgspec.to_builtins(ref)

    async def _put(self, ref: ValueRef, data: IO[bytes]) -> None:
        if not await self.objects.has(ref.object_name):  # else stored already: the same name is the same content
            await self.objects.put(ref.object_name, data)

    async def _upload_paths(self, value: Any) -> Any:
        if isinstance(value, list):
            return [await self._upload_paths(item) for item in value]
        if not isinstance(value, dict):
            return value
        kind = value.get(TAG_FIELD)
        if kind in ("file", "directory", "dataframe") and isinstance(value.get("path"), str):
            return msgspec.to_builtins(await self._upload_path(Path(value["path"]), kind))
        return {key: await self._upload_paths(item) for key, item in value.items()}

    async def _upload_path(self, path: Path, kind: ValueKind) -> ValueRef:
        try:
            if kind in FILE_KINDS:
                with path.open("rb") as source:
                    digest, size = await anyio.to_thread.run_sync(_hash_file, source)
                    ref = ValueRef(hash=digest, size=size, kind=kind, name=path.name)
                    source.seek(0)
                    await self._put(ref, source)
                if kind == "dataframe" and path.parent.name.startswith(FRAMES_FOLDER_PREFIX):
                    shutil.rmtree(path.parent, ignore_errors=True)  # written by plait for this upload alone
                return ref
            with tempfile.TemporaryFile() as archive:
                await anyio.to_thread.run_sync(_tar_directory, path, archive)
                digest, size = await anyio.to_thread.run_sync(_hash_file, archive)
                ref = ValueRef(hash=digest, size=size, kind="directory", name=path.name)
                archive.seek(0)
                await self._put(ref, archive)
            return ref
        except OSError as exc:
            raise ValueUnstorable(f"{kind} {path} cannot be read: {exc.strerror or exc}") from exc

    async def _get(self, ref: ValueRef, into: IO[bytes]) -> None:
        """The object's bytes into ``into``, checked against the reference's hash: anyone who may write the bucket
        may store other bytes under its name."""
        hashing = _Hashing(into)
        if not await self.objects.get(ref.object_name, hashing):  # type: ignore[arg-type]
            raise ValueMissing(
                f"{ref.kind} {ref.hash} ({ref.size:,} bytes) is not in the values bucket {VALUES_BUCKET}"
            )
        if ref.kind in ("value", "item"):
            hashing.digest.update(b"\x00")  # as encoding_hash
        if hashing.digest.hexdigest() != ref.hash:
            raise ValueMissing(f"{ref.kind} {ref.hash} is damaged in the values bucket: its bytes have another hash")

    async def _load_ref(self, ref: ValueRef, workdir: Path, index: int = -1) -> Any:
        if ref.kind == "item":
            items = await self._stored_list(ref)
            if not 0 <= index < len(items):
                raise ValueMissing(f"the stored list {ref.hash} has {len(items):,} items: it has no item {index}")
            return await self.load(items[index], workdir)
        if ref.kind == "value":
            return await self.load(await self._decoded(ref), workdir)
        target = workdir / _local_name(ref.hash, "hash") / _local_name(ref.name or ref.kind, "name")
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(target.name + ".partial")
            if ref.kind in FILE_KINDS:
                with partial.open("wb") as file:
                    await self._get(ref, file)
            else:
                with tempfile.TemporaryFile(dir=workdir) as archive:
                    await self._get(ref, archive)
                    archive.seek(0)
                    await anyio.to_thread.run_sync(_untar, archive, partial)
            partial.rename(target)
        return {TAG_FIELD: ref.kind, "path": str(target)}

    async def _decoded(self, ref: ValueRef) -> Any:
        buffer = io.BytesIO()
        await self._get(ref, buffer)
        data = buffer.getvalue()
        if len(data) > _OFF_LOOP_BYTES:
            return await anyio.to_thread.run_sync(msgspec.json.decode, data)
        return msgspec.json.decode(data)

    async def _stored_list(self, ref: ValueRef) -> list[Any]:
        """The stored list an item reference names, read once for the many items of a map that ask for it: the
        lists read last are kept, up to ``KEPT_LISTS_BYTES`` of their encodings (and the last one whatever its size)."""
        async with self._lists_lock:  # the items of one list come together: one of them reads it
            found = self._lists.pop(ref.hash, None)
            if found is None:
                decoded = await self._decoded(ValueRef(hash=ref.hash, size=ref.size))
                if not isinstance(decoded, list):
                    raise ValueMissing(f"value {ref.hash} is not a list: it has no items")
                found = decoded
            self._lists[ref.hash] = found
            self._kept_sizes[ref.hash] = ref.size
            while len(self._lists) > 1 and sum(self._kept_sizes.values()) > KEPT_LISTS_BYTES:
                oldest = next(iter(self._lists))
                del self._lists[oldest], self._kept_sizes[oldest]
            return found


class _Hashing:
    """A binary file that hashes what is written to it on the way (xxh3-128, as values are named)."""

    def __init__(self, file: IO[bytes]) -> None:
        self.file, self.digest = file, xxhash.xxh3_128()

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return self.file.write(data)

    def writelines(self, blocks: Iterable[bytes]) -> None:
        for block in blocks:
            self.write(block)


def _local_name(name: str, what: str) -> str:
    """``name`` as one path component: a reference comes from the log, which anyone may write to."""
    if name in ("", ".", "..") or "/" in name or "\\" in name or "\x00" in name:
        raise ValueMissing(f"a reference's {what} {name!r} is not a file name")
    return name


def _hash_file(file: IO[bytes]) -> tuple[str, int]:
    file.seek(0)
    digest, size = xxhash.xxh3_128(), 0
    while chunk := file.read(_READ_CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def _tar_directory(root: Path, archive: IO[bytes]) -> None:
    """A tar of the tree under ``root`` that depends on its contents only (names, bytes, modes): entries sorted,
    times, owners and groups zeroed; so the same tree has the same hash."""
    if not root.is_dir():
        raise NotADirectoryError(20, "not a directory", str(root))
    with tarfile.open(fileobj=archive, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for directory, names, files in os.walk(root):
            names.sort()
            for name in sorted([*names, *files]):
                path = Path(directory, name)
                info = tar.gettarinfo(str(path), arcname=str(path.relative_to(root)))
                info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                if info.isfile():
                    with path.open("rb") as source:
                        tar.addfile(info, source)
                else:
                    tar.addfile(info)


def _untar(archive: IO[bytes], target: Path) -> None:
    """The tree of a directory's tar under ``target``: its files and folders, then its symbolic links, each pointing
    down the tree (no absolute or '..' target). Anything else, or a name outside the tree, refuses the whole value:
    a tar comes from the bucket, which a task may write to, and tarfile's own "data" filter could be walked past by
    a chain of links on CPython before 3.11.13 (CVE-2025-4517)."""
    shutil.rmtree(target, ignore_errors=True)  # what an unpacking cut short left: never written into again
    target.mkdir(parents=True)
    with tarfile.open(fileobj=archive, mode="r") as tar:
        members = tar.getmembers()
        links = [member for member in members if member.issym()]
        for member in members:
            _check_member(member, target.name)
        tar.extractall(target, members=[m for m in members if not m.issym()], filter="data")
    for link in links:
        Path(target, link.name).symlink_to(link.linkname)


def _check_member(member: tarfile.TarInfo, name: str) -> None:
    path = PurePosixPath(member.name)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise ValueMissing(f"directory {name}: member {member.name!r} is outside the directory")
    if member.issym():
        link = PurePosixPath(member.linkname)
        if link.is_absolute() or ".." in link.parts or not link.parts:
            raise ValueMissing(f"directory {name}: link {member.name!r} points outside the directory")
    elif not (member.isfile() or member.isdir()):
        raise ValueMissing(f"directory {name}: member {member.name!r} is not a file, a folder or a link in it")
