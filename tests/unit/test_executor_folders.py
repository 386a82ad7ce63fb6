"""An executor's private folders are held by a lock on their owner file while it runs; another executor removes
those whose owner has ended (killed, so it never removed them), and leaves alone those of live executors, other
users' and anything else in the temporary directory."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import anyio

from plait_executor.folders import OWNED_PREFIX, OWNER_FILE, executor_folders, remove_abandoned


async def test_an_executors_folders_are_made_private_and_removed_when_it_stops(tmp_path: Path) -> None:
    async with executor_folders(str(tmp_path)) as folders:
        made = [folders.code, folders.live, folders.scratch]
        assert all(folder.is_dir() and folder.parent == folders.home for folder in made)
        assert folders.home.name.startswith(OWNED_PREFIX) and folders.home.parent == tmp_path
        assert folders.home.stat().st_mode & 0o077 == 0, "only its user may read it"
        (folders.scratch / "left.txt").write_text("by a task")
    assert [entry async for entry in anyio.Path(tmp_path).iterdir()] == []


async def test_a_live_executors_folders_are_kept_and_an_ended_ones_removed(tmp_path: Path) -> None:
    abandoned = tmp_path / f"{OWNED_PREFIX}killed"
    (abandoned / "scratch" / "123").mkdir(parents=True)
    (abandoned / OWNER_FILE).touch()  # its lock went with its process
    async with executor_folders(str(tmp_path)) as live:
        removed = await remove_abandoned(str(tmp_path))
        assert removed == [str(abandoned)]
        assert not abandoned.exists() and live.scratch.is_dir()
    assert [entry async for entry in anyio.Path(tmp_path).iterdir()] == []


async def test_a_folder_whose_owner_holds_its_lock_is_kept(tmp_path: Path) -> None:
    held = tmp_path / f"{OWNED_PREFIX}other"
    held.mkdir()
    owner = os.open(held / OWNER_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(owner, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as another process's: a lock of another open file
        assert await remove_abandoned(str(tmp_path)) == []
        assert held.is_dir()
    finally:
        os.close(owner)
    assert await remove_abandoned(str(tmp_path)) == [str(held)]


async def test_anything_else_in_the_temporary_directory_is_left_alone(tmp_path: Path) -> None:
    unlocked = tmp_path / f"{OWNED_PREFIX}no-owner-file"  # not made by executor_folders: never guessed at
    unlocked.mkdir()
    other = tmp_path / "plait-code-old"
    (other / OWNER_FILE).parent.mkdir()
    (other / OWNER_FILE).touch()
    target = tmp_path / "elsewhere"
    (target / OWNER_FILE).parent.mkdir()
    (target / OWNER_FILE).touch()
    (tmp_path / f"{OWNED_PREFIX}link").symlink_to(target)
    (tmp_path / f"{OWNED_PREFIX}file").write_text("not a folder")
    assert await remove_abandoned(str(tmp_path)) == []
    assert unlocked.is_dir() and other.is_dir() and target.is_dir()
