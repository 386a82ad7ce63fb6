"""Values read back from the object store are what their references name: a Directory's tar is unpacked only inside
the folder it is downloaded into (files, folders, and links pointing down the tree), and an object whose bytes do not
have its reference's hash is refused as damaged. The bucket is written by tasks too, so neither is taken on trust."""

from __future__ import annotations

import io
import os
import tarfile
import uuid
from pathlib import Path

import msgspec
import nats
import pytest
import xxhash

from plait import Directory, File
from plait.adapters.buckets import put_object
from plait.adapters.object_store import ValueMissing, ValueStore
from plait.core.values import ValueRef
from plait.protocol.subjects import VALUES_BUCKET


def escaping_tar(dest: Path, ups: int, name: str, payload: bytes) -> bytes:
    """A tar that, extracted into ``dest`` with ``filter="data"`` by a CPython without the fix of CVE-2025-4517
    (3.11 < 3.11.13), writes ``name`` ``ups`` folders above ``dest``: the filter's realpath() gives up resolving
    symlinks once a path is over PATH_MAX, the kernel does not."""
    steps = "abcdefghijklmnop"
    width = (4095 - len(str(dest)) - 1) // len(steps) - 1
    comp = "d" * min(width, 255)
    buf = io.BytesIO()
    path = ""
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for step in steps:
            folder = tarfile.TarInfo(os.path.join(path, comp))
            folder.type, folder.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(folder)
            link = tarfile.TarInfo(os.path.join(path, step))
            link.type, link.linkname = tarfile.SYMTYPE, comp
            tar.addfile(link)
            path = os.path.join(path, comp)
        deep = os.path.join(*steps, "l" * 254)
        back = tarfile.TarInfo(deep)
        back.type, back.linkname = tarfile.SYMTYPE, os.path.join(*[".."] * len(steps))
        tar.addfile(back)
        escape = tarfile.TarInfo("escape")
        escape.type, escape.linkname = tarfile.SYMTYPE, deep + "/.." * ups
        tar.addfile(escape)
        written = tarfile.TarInfo(f"escape/{name}")
        written.size = len(payload)
        tar.addfile(written, io.BytesIO(payload))
    return buf.getvalue()


async def test_a_directory_whose_links_lead_outside_is_refused_and_writes_nothing_outside(
    js: nats.js.JetStreamContext, tmp_path: Path
) -> None:
    """What ``handle.result()`` or ``client.outputs(..., directory)`` does with a Directory a task (or anyone who may
    write the values bucket) stored: it is refused whole, nothing written above the caller's folder."""
    workdir = tmp_path / "w"
    workdir.mkdir()
    name = "tree"
    placeholder = "0" * 32
    dest = workdir / placeholder / f"{name}.partial"  # where _load_ref untars (hash: 32 hex digits)
    data = escaping_tar(dest, 3, "planted-by-a-task", b"owned\n")
    digest = xxhash.xxh3_128_hexdigest(data)
    assert len(digest) == len(placeholder)
    ref = ValueRef(hash=digest, size=len(data), kind="directory", name=name)
    await put_object(js, VALUES_BUCKET, ref.object_name, data)

    with pytest.raises(ValueMissing, match="points outside the directory"):
        await ValueStore.on_jetstream(js).load(msgspec.to_builtins(ref), workdir)
    assert not (tmp_path / "planted-by-a-task").exists()


async def test_a_file_whose_bytes_are_replaced_in_the_bucket_is_refused_as_damaged(
    js: nats.js.JetStreamContext, tmp_path: Path
) -> None:
    """A File stored by its xxh3-128; another writer of the bucket stores other bytes under the same name (the last
    record of a name is the one read)."""
    original = tmp_path / f"input-{uuid.uuid4().hex}.csv"
    original.write_bytes(b"a,b\n1,2\n")
    values = ValueStore.on_jetstream(js)
    stored = await values.store(msgspec.to_builtins(File(str(original))))
    ref = msgspec.convert(stored, ValueRef)
    await put_object(js, VALUES_BUCKET, ref.object_name, b"a,b\n1,666\n")

    with pytest.raises(ValueMissing, match="damaged"):
        await values.load(stored, tmp_path / "down")


async def test_a_stored_value_whose_encoding_is_replaced_is_refused_as_damaged(
    js: nats.js.JetStreamContext, tmp_path: Path
) -> None:
    values = ValueStore.on_jetstream(js, inline_limit=16)
    stored = await values.store({"rows": list(range(100))})
    ref = msgspec.convert(stored, ValueRef)
    await put_object(js, VALUES_BUCKET, ref.object_name, msgspec.json.encode({"rows": [666]}))
    with pytest.raises(ValueMissing, match="damaged"):
        await values.load(stored, tmp_path)


async def test_a_directory_with_links_down_its_tree_comes_back_as_it_was(
    js: nats.js.JetStreamContext, tmp_path: Path
) -> None:
    tree = tmp_path / "up" / f"tree-{uuid.uuid4().hex[:8]}"
    (tree / "data").mkdir(parents=True)
    (tree / "data" / "rows.csv").write_text("a,b\n1,2\n")
    (tree / "latest.csv").symlink_to("data/rows.csv")
    (tree / "current").symlink_to("data")
    values = ValueStore.on_jetstream(js)
    stored = await values.store(msgspec.to_builtins(Directory(str(tree))))
    loaded = Path((await values.load(stored, tmp_path / "down"))["path"])
    assert (loaded / "latest.csv").is_symlink() and os.readlink(loaded / "latest.csv") == "data/rows.csv"
    assert (loaded / "current" / "rows.csv").read_text() == "a,b\n1,2\n"


@pytest.mark.parametrize("target", ["../outside", "/etc/passwd", "data/../../outside"])
async def test_a_directory_with_a_link_out_of_its_tree_is_refused(
    js: nats.js.JetStreamContext, tmp_path: Path, target: str
) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        link = tarfile.TarInfo("out")
        link.type, link.linkname = tarfile.SYMTYPE, target
        tar.addfile(link)
    data = buffer.getvalue()
    ref = ValueRef(hash=xxhash.xxh3_128_hexdigest(data), size=len(data), kind="directory", name="tree")
    await put_object(js, VALUES_BUCKET, ref.object_name, data)
    with pytest.raises(ValueMissing, match="link 'out' points outside the directory"):
        await ValueStore.on_jetstream(js).load(msgspec.to_builtins(ref), tmp_path)


async def test_a_directory_unpacked_over_what_a_cut_short_download_left_holds_only_its_tree(
    js: nats.js.JetStreamContext, tmp_path: Path
) -> None:
    tree = tmp_path / "up" / "tree"
    tree.mkdir(parents=True)
    (tree / "rows.csv").write_text("a\n1\n")
    values = ValueStore.on_jetstream(js)
    stored = await values.store(msgspec.to_builtins(Directory(str(tree))))
    ref = msgspec.convert(stored, ValueRef)
    left = tmp_path / "down" / ref.hash / "tree.partial"
    left.mkdir(parents=True)
    (left / "stale.txt").write_text("from a download cut short")
    (left / "elsewhere").symlink_to(tmp_path)
    loaded = Path((await values.load(stored, tmp_path / "down"))["path"])
    assert sorted(os.listdir(loaded)) == ["rows.csv"]
