"""Ed25519 keys and signatures over a bundle's manifest bytes (the `cryptography` package)."""

from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import IntegrityError, KeyFileError, OutputExistsError

PRIVATE_NAME = "edgeml.key"
PUBLIC_NAME = "edgeml.pub"


def generate_keypair(out_dir: Path, force: bool = False) -> tuple[Path, Path]:
    """Write an ed25519 key pair (PEM) into out_dir; the private key is readable by its owner only."""
    out_dir = Path(out_dir)
    private_path, public_path = out_dir / PRIVATE_NAME, out_dir / PUBLIC_NAME
    for path in (private_path, public_path):
        if path.exists() and not force:
            raise OutputExistsError(f"{path} exists; pass --force to overwrite it")
    out_dir.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private_pem)
    public_path.write_bytes(public_pem)
    return private_path, public_path


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    data = _read_key_file(path, "signing")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path} is not a PEM ed25519 private key ({exc}); create one with `edgeml keys generate`") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path} is a {type(key).__name__}, not an ed25519 private key")
    return key


def load_public_key(path: str | Path) -> Ed25519PublicKey:
    data = _read_key_file(path, "verification")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path} is not a PEM ed25519 public key ({exc}); use the .pub file from `edgeml keys generate`") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"{path} is a {type(key).__name__}, not an ed25519 public key")
    return key


def sign(key: Ed25519PrivateKey, data: bytes) -> bytes:
    """Return the signature as base64 text (what manifest.sig holds)."""
    return base64.b64encode(key.sign(data)) + b"\n"


def verify(key: Ed25519PublicKey, data: bytes, signature_text: bytes, what: str = "manifest.json") -> None:
    try:
        signature = base64.b64decode(signature_text.strip(), validate=True)
        key.verify(signature, data)
    except (InvalidSignature, ValueError):
        raise IntegrityError(f"signature check failed: {what} was modified or signed with another key") from None


def _read_key_file(path: str | Path, role: str) -> bytes:
    path = Path(path)
    if not path.is_file():
        raise KeyFileError(f"{role} key {path} not found")
    return path.read_bytes()
