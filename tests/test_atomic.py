"""edgeml.atomic: a reader or a restarted process sees the old file or the new one, never a torn one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgeml.atomic import atomic_open, atomic_write_bytes, atomic_write_json, swap_dir


def _synced(monkeypatch) -> list[str]:
    """Record what os.fsync is called on (the path behind each descriptor)."""
    seen: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        seen.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return seen


def test_write_replaces_the_file_and_syncs_it_and_its_directory(tmp_path, monkeypatch):
    target = tmp_path / "sub" / "state.json"
    atomic_write_json(target, {"last_seq": 1})
    seen = _synced(monkeypatch)
    atomic_write_json(target, {"last_seq": 2})
    assert json.loads(target.read_text()) == {"last_seq": 2}
    assert os.listdir(target.parent) == ["state.json"]  # no temp file left
    assert seen[-1] == str(target.parent)  # the rename is made durable
    assert any(Path(p).parent == target.parent and p != str(target.parent) for p in seen[:-1])  # the data first


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path):
    target = tmp_path / "model.bin"
    atomic_write_bytes(target, b"old")
    with pytest.raises(RuntimeError):
        with atomic_open(target) as f:
            f.write(b"half of the ne")
            raise RuntimeError("disk went away")
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["model.bin"]


def test_a_process_killed_mid_write_leaves_the_old_file(tmp_path):
    target = tmp_path / "state.json"
    atomic_write_bytes(target, b'{"ok": true}')
    code = ("import os, sys; from edgeml.atomic import atomic_open\n"
            f"with atomic_open({str(target)!r}) as f:\n"
            "    f.write(b'{\"torn'); f.flush(); os._exit(9)\n")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 9
    assert json.loads(target.read_text()) == {"ok": True}


def test_append_modes_are_refused(tmp_path):
    with pytest.raises(ValueError, match="whole files"):
        with atomic_open(tmp_path / "x", "ab"):
            pass


def test_swap_dir_replaces_a_directory_and_leaves_nothing_behind(tmp_path):
    target, staged = tmp_path / "bundle", tmp_path / ".bundle.partial"
    (target / "artifacts").mkdir(parents=True)
    (target / "artifacts" / "old.onnx").write_bytes(b"old")
    (staged / "artifacts").mkdir(parents=True)
    (staged / "artifacts" / "new.onnx").write_bytes(b"new")
    swap_dir(staged, target)
    assert [p.name for p in (target / "artifacts").iterdir()] == ["new.onnx"]
    assert sorted(os.listdir(tmp_path)) == ["bundle"]
