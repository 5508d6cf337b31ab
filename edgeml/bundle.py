"""Build, read and verify bundles on disk.

A bundle is built in a temporary sibling directory and renamed into place only when complete, so a
failure never leaves a half-written bundle. Verification checks the signature over manifest.json and
then the sha256 of every file the manifest lists (or only those a device downloaded).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from . import signing
from .atomic import atomic_write_bytes, swap_dir
from .errors import BundleError, IntegrityError, OutputExistsError
from .hashing import sha256_file
from .manifest import MANIFEST_NAME, SIGNATURE_NAME, FileEntry, Manifest


class BundleBuilder:
    """Stage a bundle in a temp dir next to `target`; `commit()` renames it into place."""

    def __init__(self, target: str | Path, force: bool = False) -> None:
        self.target = Path(target).absolute()
        if self.target.exists() and not force:
            raise OutputExistsError(f"{self.target} exists; pass --force to replace it or choose another --out")
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.root = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.", suffix=".partial", dir=self.target.parent))
        self._committed = False

    def __enter__(self) -> "BundleBuilder":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self._committed:
            self.abort()

    def file_entry(self, relpath: str) -> FileEntry:
        path = self.root / relpath
        return FileEntry(relpath.replace(os.sep, "/"), sha256_file(path), path.stat().st_size)

    def entries_under(self, reldir: str) -> list[FileEntry]:
        base = self.root / reldir
        paths = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
        return [self.file_entry(str(p.relative_to(self.root))) for p in paths]

    def commit(self, manifest: Manifest, sign_key: Ed25519PrivateKey | None = None) -> Path:
        data = manifest.to_json_bytes()
        atomic_write_bytes(self.root / MANIFEST_NAME, data)
        if sign_key is not None:
            atomic_write_bytes(self.root / SIGNATURE_NAME, signing.sign(sign_key, data))
        swap_dir(self.root, self.target)  # an existing target is only here with force=True
        self._committed = True
        return self.target

    def abort(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class Verification:
    manifest: Manifest
    signed: bool
    signature_verified: bool
    files_checked: int


def read_manifest(bundle: str | Path) -> Manifest:
    path = Path(bundle)
    if not path.is_dir():
        raise BundleError(f"{path} is not a bundle directory")
    manifest_path = path / MANIFEST_NAME
    if not manifest_path.is_file():
        raise BundleError(f"{path} has no {MANIFEST_NAME}; is it a bundle made by `edgeml convert`?")
    return Manifest.from_json_bytes(manifest_path.read_bytes())


def verify_bundle(
    bundle: str | Path,
    public_key: Ed25519PublicKey | None = None,
    only: Iterable[FileEntry] | None = None,
    require_signature: bool = False,
) -> Verification:
    """Verify the signature (when a key is given) and then the hash of every listed file.

    `only` restricts the hash check to some files (a device checks just the artifact it downloaded).
    Raises IntegrityError naming the first file that is missing or whose hash differs.
    """
    root = Path(bundle)
    manifest = read_manifest(root)
    data = (root / MANIFEST_NAME).read_bytes()
    sig_path = root / SIGNATURE_NAME
    signed = sig_path.is_file()
    if public_key is not None or require_signature:
        if not signed:
            raise IntegrityError(f"{root} is not signed ({SIGNATURE_NAME} is missing); it cannot be verified")
    if public_key is not None:
        signing.verify(public_key, data, sig_path.read_bytes())
    files = list(only) if only is not None else manifest.all_files()
    for entry in files:
        check_file(root, entry)
    return Verification(manifest, signed, public_key is not None, len(files))


def check_file(root: Path, entry: FileEntry) -> None:
    path = root / entry.path
    if not path.is_file():
        raise IntegrityError(f"{entry.path} is missing from the bundle")
    if path.stat().st_size != entry.size or sha256_file(path) != entry.sha256:
        raise IntegrityError(f"{entry.path}: sha256 differs from the manifest; the file was modified or corrupted")
