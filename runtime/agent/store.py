"""The device store: installed versions, the active and previous ones, and state that survives a crash.

    STORE/models/NAME/VERSION/   a bundle subset: manifest.json, manifest.sig, samples.npz, one artifact
    STORE/current -> models/NAME/VERSION     STORE/previous -> ...
    STORE/state.json             last applied desired sequence number, what is active, freshness
    STORE/seq.json               the last applied sequence number again (state.json may be lost or corrupt)
    STORE/models/NAME/VERSION/desired.signed.json   the signed desired document that version was installed for
    STORE/staging/  STORE/downloads/  STORE/outbox/

Every write is temp-file + fsync + rename (edgeml.atomic); activation is an atomic symlink replacement. A kill at any
point leaves `current` pointing at a complete, verified install (or nothing, on a new device).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from edgeml.atomic import atomic_write_bytes, atomic_write_json, fsync_dir, fsync_tree

SEQ_NAME = "seq.json"
DESIRED_NAME = "desired.signed.json"  # installer.RESERVED refuses it as a bundle file name


class DeviceStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).absolute()
        for sub in ("models", "staging", "downloads", "outbox"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self._clean_staging()

    # -- state ---------------------------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.root / "state.json"

    def state(self) -> dict[str, Any]:
        """state.json, with `last_seq` the highest of state.json and seq.json (either may be lost or corrupt).
        The agent raises it further to what the active version's own signed document proves."""
        state = _read_json(self.state_path) or {}
        seqs = [_seq(state), _seq(_read_json(self.root / SEQ_NAME))]
        state["last_seq"] = max(s for s in seqs if s is not None) if any(s is not None for s in seqs) else 0
        return state

    def save_state(self, state: dict[str, Any]) -> None:
        atomic_write_json(self.root / SEQ_NAME, {"last_seq": int(state.get("last_seq", 0))})
        atomic_write_json(self.state_path, state)

    def save_desired(self, directory: Path, payload: bytes) -> None:
        """Keep the signed desired document `directory`'s version was applied for (a floor for last_seq)."""
        atomic_write_bytes(Path(directory) / DESIRED_NAME, payload)

    def installed_desired(self) -> list[bytes]:
        """The signed desired documents of the active and previous versions (to be verified by the caller)."""
        out = []
        for d in (self.active_dir(), self.previous_dir()):
            if d is None:
                continue
            try:
                out.append((d / DESIRED_NAME).read_bytes())
            except OSError:
                pass
        return out

    # -- installed versions --------------------------------------------------------------------
    def version_dir(self, name: str, version: str) -> Path:
        return self.root / "models" / name / version

    def staging_dir(self) -> Path:
        return Path(tempfile.mkdtemp(dir=self.root / "staging", prefix="install-"))

    def commit_staging(self, staging: Path, name: str, version: str) -> Path:
        """Move a complete staged install to models/NAME/VERSION (replacing a stale copy)."""
        target = self.version_dir(name, version)
        target.parent.mkdir(parents=True, exist_ok=True)
        fsync_tree(staging)
        if target.exists():
            if self.active_dir() is not None and self.active_dir().resolve() == target.resolve():
                shutil.rmtree(staging, ignore_errors=True)
                return target
            shutil.rmtree(target)
        os.rename(staging, target)
        fsync_dir(target.parent)
        return target

    def active_dir(self) -> Path | None:
        link = self.root / "current"
        return link if link.is_symlink() and link.resolve().is_dir() else None

    def previous_dir(self) -> Path | None:
        link = self.root / "previous"
        return link if link.is_symlink() and link.resolve().is_dir() else None

    def activate(self, target: Path) -> None:
        """current -> target, previous -> the old current; each link replaced atomically."""
        old = self.active_dir()
        if old is not None and old.resolve() != target.resolve():
            self._link("previous", old.resolve())
        self._link("current", target)

    def _link(self, name: str, target: Path) -> None:
        tmp = self.root / f".{name}.tmp"
        tmp.unlink(missing_ok=True)
        os.symlink(os.path.relpath(target, self.root), tmp)
        os.replace(tmp, self.root / name)
        fsync_dir(self.root)

    def prune(self, keep: int = 2) -> None:
        """Delete installed versions other than current and previous."""
        keep_dirs = {d.resolve() for d in (self.active_dir(), self.previous_dir()) if d is not None}
        for model_dir in (self.root / "models").iterdir():
            for version_dir in model_dir.iterdir():
                if version_dir.resolve() not in keep_dirs:
                    shutil.rmtree(version_dir, ignore_errors=True)

    def restore_current(self, target: Path | None) -> None:
        """After a failed activation: `current` back to what is serving (best effort)."""
        if target is not None and (self.active_dir() is None or self.active_dir().resolve() != target):
            self._link("current", target)

    def _clean_staging(self) -> None:
        for path in (self.root / "staging").iterdir():
            shutil.rmtree(path, ignore_errors=True)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _seq(state: dict[str, Any] | None) -> int | None:
    value = (state or {}).get("last_seq")
    return value if type(value) is int and value >= 0 else None
