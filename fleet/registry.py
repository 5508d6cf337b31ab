"""Model registry: register pushed bundles (verify, store blobs content-addressed) and look them up."""

from __future__ import annotations

import io
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError as DBIntegrityError

from edgeml.bundle import read_manifest, verify_bundle
from edgeml.errors import BundleError, ConflictError, EdgeMLError, IntegrityError
from edgeml.hashing import sha256_file
from edgeml.manifest import MANIFEST_NAME, SIGNATURE_NAME

from . import db
from .store import BlobStore

MAX_BUNDLE_BYTES = 2 * 1024**3
TOO_LARGE = "too_large"  # reason of an upload over MAX_BUNDLE_BYTES


@dataclass
class Registered:
    name: str
    version: str
    artifacts: list[str]
    signature_verified: bool


class Registry:
    def __init__(self, engine: Engine, store: BlobStore, verify_key: Ed25519PublicKey | None) -> None:
        self.engine, self.store, self.verify_key = engine, store, verify_key

    def push_tar(self, data: bytes) -> Registered:
        """Register a bundle uploaded as a (gzip) tar of the bundle directory's contents."""
        if len(data) > MAX_BUNDLE_BYTES:
            raise BundleError("bundle too large", reason=TOO_LARGE)
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "bundle"
            root.mkdir()
            _safe_extract(data, root)
            return self.push_dir(root)

    def push_dir(self, root: Path) -> Registered:
        """Register a bundle directory. Only files of this bundle are ever read: every manifest path is
        checked when the manifest is parsed (relative, normalized, no `..`: `edgeml.messages.FileEntry`),
        and here, before anything is read, to be a regular file inside `root` with no symlink on its way."""
        root = Path(root)
        _inside(root, MANIFEST_NAME)
        if (root / SIGNATURE_NAME).exists() or (root / SIGNATURE_NAME).is_symlink():
            _inside(root, SIGNATURE_NAME)
        try:
            listed = read_manifest(root)
        except EdgeMLError as exc:
            kind = IntegrityError if isinstance(exc, IntegrityError) else BundleError
            raise kind(f"bundle rejected: {exc.message}") from None
        for entry in listed.all_files():
            _inside(root, entry.path)
        if not (root / SIGNATURE_NAME).is_file() and self.verify_key is not None:
            raise IntegrityError("bundle is not signed; this fleet only accepts bundles signed by its key")
        try:
            result = verify_bundle(root, public_key=self.verify_key)
        except EdgeMLError as exc:
            kind = IntegrityError if isinstance(exc, IntegrityError) else BundleError
            raise kind(f"bundle rejected: {exc.message}") from None
        m = result.manifest
        for entry in m.all_files():
            self.store.put_file(root / entry.path, expected=entry.sha256)
        manifest_blob = self.store.put_file(root / MANIFEST_NAME)
        sig_blob = self.store.put_file(root / SIGNATURE_NAME) if result.signed else None
        row = {
            "name": m.name, "version": m.version, "manifest": m.to_dict(), "manifest_sha256": manifest_blob,
            "manifest_blob": manifest_blob, "signature_blob": sig_blob, "created_at": time.time(),
        }
        try:
            with self.engine.begin() as conn:
                conn.execute(db.models.insert().values(**row))
        except DBIntegrityError:
            raise ConflictError(f"{m.name} {m.version} is already registered; bump --version to push a new one") from None
        return Registered(m.name, m.version, [a.key for a in m.artifacts], result.signature_verified)

    def list(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(*db.lenient_columns(db.models))
                                .order_by(db.models.c.name, db.models.c.created_at)).mappings().all()
        return [_summary(_model_row(r)) for r in rows]

    def get(self, name: str, version: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(*db.lenient_columns(db.models))
                               .where(db.models.c.name == name, db.models.c.version == version)).mappings().first()
        if row is None:
            return None
        row = _model_row(row)
        return {**_summary(row), "manifest": row["manifest"],
                                         "manifest_blob": row["manifest_blob"], "signature_blob": row["signature_blob"]}


def _model_row(row: Any) -> dict[str, Any]:
    """A model_versions row with its manifest decoded; a manifest this version cannot read is {}
    (the version is listed, with no artifacts and no drift reference, rather than failing the read)."""
    row = dict(row)
    manifest = db.load_json(row["manifest"])
    if not isinstance(manifest, dict) or not all(isinstance(a, dict) for a in manifest.get("artifacts") or []):
        manifest = {}
    for key in ("validation", "latency"):
        for a in manifest.get("artifacts") or []:
            if not isinstance(a.get(key, {}), dict):
                a[key] = {}
    row["manifest"] = manifest
    return row


def _summary(row: Any) -> dict[str, Any]:
    m = row["manifest"]
    return {
        "name": row["name"], "version": row["version"], "created_at": row["created_at"], "task": m.get("task"),
        "signed": row["signature_blob"] is not None,
        "artifacts": [{"format": a.get("format"), "precision": a.get("precision"), "size": a.get("size"),
                       "passed": a.get("validation", {}).get("passed"),
                       "latency_ms": a.get("latency", {}).get("median_ms"),
                       "max_abs_error": a.get("validation", {}).get("max_abs_error"),
                       "top1_agreement": a.get("validation", {}).get("top1_agreement")} for a in m.get("artifacts", [])],
    }


def _inside(root: Path, relpath: str) -> Path:
    """root/relpath when no part of it is a symlink and it stays inside root (IntegrityError otherwise).

    A missing file passes here (verify_bundle reports it as missing); the error for a path that leaves
    the bundle never depends on what exists outside it."""
    path, base = root, root.resolve()
    for part in Path(relpath).parts:
        path = path / part
        if path.is_symlink():
            raise IntegrityError(f"bundle rejected: {relpath} is a symbolic link; bundle files must be regular files")
    if not path.resolve().is_relative_to(base):
        raise IntegrityError(f"bundle rejected: {relpath} points outside the bundle")
    return path


def _safe_extract(data: bytes, root: Path) -> None:
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            for member in tar.getmembers():
                target = (root / member.name).resolve()
                if not str(target).startswith(str(root.resolve())) or member.issym() or member.islnk():
                    raise BundleError(f"unsafe path in bundle archive: {member.name}")
            tar.extractall(root, filter="data")
    except tarfile.TarError as exc:
        raise BundleError(f"upload is not a tar archive of a bundle: {exc}") from None


def pack_bundle(bundle: Path) -> bytes:
    """The upload form of a bundle directory: a gzip tar of its contents (used by `edgeml fleet push`)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path in sorted(Path(bundle).rglob("*")):
            if path.is_file():
                tar.add(path, arcname=str(path.relative_to(bundle)))
    return buf.getvalue()


__all__ = ["Registry", "Registered", "pack_bundle", "sha256_file"]
