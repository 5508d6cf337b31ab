"""Content-addressed blob store: files live under blobs/ab/<sha256>, written atomically."""

from __future__ import annotations

import hashlib
from pathlib import Path

from edgeml.atomic import atomic_copy, atomic_write_bytes
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
        return p if p.is_file() and not p.is_symlink() else None  # only blobs this store wrote

    def put_file(self, src: Path, expected: str | None = None) -> str:
        digest = sha256_file(src)
        if expected is not None and digest != expected:
            raise ValueError(f"{src.name}: sha256 {digest} differs from the expected {expected}")
        if self.path(digest) is None:
            atomic_copy(src, self.root / digest[:2] / digest)
        return digest

    def put_bytes(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        if self.path(digest) is None:
            atomic_write_bytes(self.root / digest[:2] / digest, data)
        return digest
