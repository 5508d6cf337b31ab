"""Read a bundle's manifest for loading: signature checked when a key is pinned, artifact hashes always.

The manifest bytes are read once, and the same bytes are verified and parsed, so what is checked is
what is used.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edgeml import signing
from edgeml.bundle import check_file
from edgeml.errors import BundleError, IntegrityError
from edgeml.manifest import MANIFEST_NAME, SIGNATURE_NAME, ArtifactEntry, Manifest

VerifyKey = str | Path | Ed25519PublicKey | None


def public_key(key: VerifyKey) -> Ed25519PublicKey | None:
    if key is None or isinstance(key, Ed25519PublicKey):
        return key
    return signing.load_public_key(key)


def read_checked_manifest(root: Path, key: Ed25519PublicKey | None) -> Manifest:
    """Parse manifest.json after verifying its signature with `key` (when given)."""
    if not root.is_dir():
        raise BundleError(f"{root} is not a bundle directory")
    path = root / MANIFEST_NAME
    if not path.is_file():
        raise BundleError(f"{root} has no {MANIFEST_NAME}; is it a bundle made by `edgeml convert`?")
    data = path.read_bytes()
    if key is not None:
        sig = root / SIGNATURE_NAME
        if not sig.is_file():
            raise IntegrityError(f"{root} is not signed ({SIGNATURE_NAME} is missing) but a verification key was given")
        signing.verify(key, data, sig.read_bytes())
    return Manifest.from_json_bytes(data)


def check_artifact(root: Path, artifact: ArtifactEntry) -> None:
    """Hash the artifact's own files (a device downloads only the artifact it runs)."""
    if not artifact.files:
        raise IntegrityError(f"the manifest lists no files for artifact {artifact.key}; the bundle is malformed")
    base = root.resolve()
    for rel in [artifact.path] + [f.path for f in artifact.files]:
        if not (root / rel).resolve().is_relative_to(base):
            raise IntegrityError(f"artifact {artifact.key} points outside the bundle ({rel!r}); refusing to load it")
    listed = {f.path for f in artifact.files}
    target = artifact.path.rstrip("/")
    if target not in listed and not any(p.startswith(target + "/") for p in listed):
        raise IntegrityError(f"artifact {artifact.key}: {artifact.path} is not among its hashed files; the bundle is malformed")
    for entry in artifact.files:
        check_file(root, entry)
