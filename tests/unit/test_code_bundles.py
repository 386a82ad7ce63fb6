"""Code bundles without a server: packing is deterministic and leaves caches out; unpacking refuses what is not a
plain file or folder under a source root, and what is too large; a bundle is part of the workflow's version only."""

from __future__ import annotations

import io
import os
import sys
import tarfile
import uuid
from pathlib import Path

import msgspec
import pytest

from plait import codec
from plait.adapters.code_store import BundleUnusable
from plait.core.bundles import bundled_spec
from plait.core.model import TaskTarget
from plait.errors import DefinitionError
from plait.sdk import bundles
from plait_executor import code_bundles, code_roots
from plait_executor.code_bundles import unpack
from plait_executor.code_roots import bundle_paths, target_in_code_root
from tests.helpers.code_bundle_sources import write_flow


def members(data: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return tar.getnames()


def test_the_same_source_makes_the_same_bundle_whatever_its_files_times(tmp_path: Path) -> None:
    module = f"packed_{uuid.uuid4().hex[:12]}"
    flow = write_flow(tmp_path / "src", module, factor=2)
    first = bundles.pack(flow)
    for path in (tmp_path / "src").iterdir():
        os.utime(path, (1, 1))
    assert bundles.pack(flow).hash == first.hash
    assert first.roots == (tmp_path / "src",)
    assert {f"0/{module}.py", f"0/{module}_helper.py"} <= set(members(first.data))
    changed = write_flow(tmp_path / "src", module, factor=3)
    assert bundles.pack(changed).hash != first.hash


def test_caches_virtual_environments_and_hidden_folders_are_left_out(tmp_path: Path) -> None:
    module = f"packed_{uuid.uuid4().hex[:12]}"
    flow = write_flow(tmp_path / "src", module, factor=2)
    for folder in ("__pycache__", ".git", "env"):
        (tmp_path / "src" / folder).mkdir()
        (tmp_path / "src" / folder / "junk.py").write_text("")
    (tmp_path / "src" / "env" / "pyvenv.cfg").write_text("")
    (tmp_path / "src" / "data.json").write_text("{}")
    names = members(bundles.pack(flow).data)
    assert "0/data.json" in names and not [name for name in names if "junk" in name]


def test_a_source_root_too_large_is_refused_when_packed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    flow = write_flow(tmp_path / "src", f"packed_{uuid.uuid4().hex[:12]}", factor=2)
    monkeypatch.setattr(bundles, "MAX_BUNDLE_BYTES", 10)
    with pytest.raises(DefinitionError, match="too large for a code bundle"):
        bundles.pack(flow)


def archive_of(*entries: tarfile.TarInfo) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for entry in entries:
            tar.addfile(entry, io.BytesIO(b"\0" * entry.size) if entry.isfile() else None)
    return buffer.getvalue()


def file_entry(name: str, size: int = 4) -> tarfile.TarInfo:
    entry = tarfile.TarInfo(name)
    entry.size = size
    return entry


def link_entry(name: str, target: str) -> tarfile.TarInfo:
    entry = tarfile.TarInfo(name)
    entry.type, entry.linkname = tarfile.SYMTYPE, target
    return entry


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        (file_entry("0/../../escaped.py"), "outside the bundle's source roots"),
        (file_entry("/etc/escaped.py"), "outside the bundle's source roots"),
        (file_entry("escaped.py"), "outside the bundle's source roots"),
        (link_entry("0/passwd", "/etc/passwd"), "not a plain file or folder"),
    ],
)
def test_a_hostile_archive_is_refused_and_nothing_is_unpacked(
    tmp_path: Path, entry: tarfile.TarInfo, reason: str
) -> None:
    (tmp_path / "cache").mkdir()
    with pytest.raises(BundleUnusable, match=reason):
        unpack(archive_of(file_entry("0/fine.py"), entry), tmp_path / "cache" / "bundle")
    assert list((tmp_path / "cache").iterdir()) == []
    assert not (tmp_path / "escaped.py").exists()


def test_an_archive_unpacking_too_large_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(code_bundles, "MAX_BUNDLE_BYTES", 100)
    with pytest.raises(BundleUnusable, match="unpacks to over 100 bytes"):
        unpack(archive_of(file_entry("0/a.py", 60), file_entry("0/b.py", 60)), tmp_path / "bundle")


def test_an_archive_that_is_not_a_tar_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BundleUnusable, match="not a readable archive"):
        unpack(b"not a tar at all" * 100, tmp_path / "bundle")


def test_an_unpacked_bundle_puts_its_roots_in_order(tmp_path: Path) -> None:
    unpack(archive_of(file_entry("0/a.py"), file_entry("10/c.py"), file_entry("2/b.py")), tmp_path / "bundle")
    assert bundle_paths(str(tmp_path / "bundle")) == [str(tmp_path / "bundle" / n) for n in ("0", "2", "10")]


def test_a_process_puts_the_roots_of_the_code_root_it_imports_from_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(code_roots, "_first_on_path", [])
    target = TaskTarget(module="m", qualname="f", file="/registered/m.py")
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    assert target_in_code_root(target, one) == TaskTarget(module="m", qualname="f", file=None)
    assert not [path for path in sys.path if path.startswith(one)], "not unpacked yet: nothing to put first"
    unpack(archive_of(file_entry("0/a.py"), file_entry("1/b.py")), Path(one))
    unpack(archive_of(file_entry("0/a.py")), Path(two))
    target_in_code_root(target, one)
    assert sys.path[:2] == [f"{one}/0", f"{one}/1"], "unpacked since: its roots first"
    target_in_code_root(target, two)
    target_in_code_root(target, two)
    assert sys.path[:3] == [f"{two}/0", f"{one}/0", f"{one}/1"] and sys.path.count(f"{two}/0") == 1
    target_in_code_root(target, one)
    assert sys.path[:3] == [f"{one}/0", f"{one}/1", f"{two}/0"]
    assert target_in_code_root(target, None) is target


def test_a_bundle_changes_the_workflow_version_not_its_tasks(tmp_path: Path) -> None:
    flow = write_flow(tmp_path / "src", f"packed_{uuid.uuid4().hex[:12]}", factor=2)
    spec = bundled_spec(flow.spec, "a" * 64)
    assert spec.version != flow.spec.version and spec.tasks == flow.spec.tasks
    assert bundled_spec(flow.spec, "b" * 64).version != spec.version
    assert b"code_bundle" not in codec.encode(flow.spec), "a spec without a bundle encodes as before"
    assert msgspec.json.decode(codec.encode(spec))["code_bundle"] == "a" * 64
    with pytest.raises(ValueError, match="not a code bundle hash"):
        bundled_spec(flow.spec, "../x")
