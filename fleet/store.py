"""Content-addressed blob store: files live under blobs/ab/<sha256>, written atomically."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from edgeml.hashing import sha256_file

HEX = set("0123456789abcdef")


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root) / "blobs"
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path | None:
        if len(digest) != 64 or not set(digest) <= HEX:
            return None
        p = self.root / digest[:2] / digest
        return p if p.is_file() else None

    def put_file(self, src: Path, expected: str | None = None) -> str:
        digest = sha256_file(src)
        if expected is not None and digest != expected:
            raise ValueError(f"{src.name}: sha256 {digest} differs from the expected {expected}")
        if self.path(digest) is None:
            target = self.root / digest[:2] / digest
            target.parent.mkdir(exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
            with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
                shutil.copyfileobj(inp, out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
        return digest

    def put_bytes(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        if self.path(digest) is None:
            target = self.root / digest[:2] / digest
            target.parent.mkdir(exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
        return digest
