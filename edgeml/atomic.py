"""Crash-safe file writes: write a temp name in the target's directory, fsync it, rename it over the
target, fsync the directory. A reader (or a process restarted after a kill) sees the old file or the
new one, never a torn one. Stdlib only: the device uses it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator


def fsync_dir(path: str | Path) -> None:
    """Persist a directory's entries (a rename or a new file in it). A no-op where directories
    cannot be opened or synced (some filesystems, Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_file(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: str | Path) -> None:
    """fsync every file and directory under `root` (and `root`): before renaming a staged tree into place."""
    root = Path(root)
    for path in root.rglob("*"):
        if path.is_symlink():
            continue
        if path.is_file():
            fsync_file(path)
        elif path.is_dir():
            fsync_dir(path)
    fsync_dir(root)


@contextmanager
def atomic_open(path: str | Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """Stream into a temp file next to `path`; on success it is fsynced and renamed over `path`.

    On an exception the temp file is removed and `path` is untouched.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open writes whole files: mode 'wb' or 'w', not {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any, indent: int | None = 2) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=indent).encode("utf-8"))


def atomic_copy(src: str | Path, path: str | Path) -> None:
    with open(src, "rb") as inp, atomic_open(path, "wb") as out:
        shutil.copyfileobj(inp, out)


def atomic_replace(src: str | Path, path: str | Path) -> None:
    """Rename a complete file `src` (already in `path`'s filesystem) over `path`, durably."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fsync_file(src)
    os.replace(src, path)
    fsync_dir(path.parent)


def swap_dir(staged: str | Path, target: str | Path) -> None:
    """Move the complete directory `staged` to `target`, replacing an existing `target`.

    `staged` is fsynced first. A directory cannot be renamed over a non-empty one, so an existing
    target is first renamed aside and deleted after the swap (a kill between the two renames leaves
    the old tree under a hidden `.NAME.replaced` sibling, removed by the next swap).
    """
    staged, target = Path(staged), Path(target)
    fsync_tree(staged)
    if target.exists():
        trash = target.with_name(f".{target.name}.replaced")
        shutil.rmtree(trash, ignore_errors=True)
        os.rename(target, trash)
        os.rename(staged, target)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.rename(staged, target)
    fsync_dir(target.parent)
