"""Install a desired version: verify, download one artifact, stage, smoke-test, swap atomically.

Any failure leaves the active model serving and returns the reason; the caller reports it. Reasons in
TRANSIENT are worth a retry with backoff (network, a corrupt partial download, a full disk, storage);
every other reason is final (a bad signature or manifest, an unsafe path, nothing runnable, a failed
smoke test). Nothing is written before the manifest is verified and parsed, and every file is written
at a checked path inside the staging directory.
"""

from __future__ import annotations

import errno
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edgeml.atomic import atomic_write_bytes
from edgeml.compare import Tolerance, check_golden
from edgeml.errors import EdgeMLError, IntegrityError
from edgeml.manifest import MANIFEST_NAME, SAMPLES_NAME, SIGNATURE_NAME, ArtifactEntry, Manifest
from edgeml.messages import BundleLocation
from edgeml.samples import read_samples
from edgeml.signing import verify as verify_signature

from ..model import Model, load
from ..selection import Preference, select_artifact
from .download import Budget, DownloadError, DownloadLimits, download_blob, fetch_small
from .store import DESIRED_NAME, DeviceStore


# Failure reasons a later attempt may not meet again; every other reason is final.
TRANSIENT = frozenset({
    "download_unreachable", "download_stalled", "download_incomplete", "download_too_slow", "download_deadline",
    "download_server_error", "download_hash_mismatch", "download_disk_full", "disk_full", "storage_error",
    "activation_failed", "internal_error",
})
CANCELLED = "download_cancelled"
RESERVED = (MANIFEST_NAME, SIGNATURE_NAME, DESIRED_NAME)


class InstallFailed(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail

    @property
    def transient(self) -> bool:
        return self.reason in TRANSIENT


@dataclass
class Installed:
    model: Model
    directory: Path


Progress = Callable[[str], None]


class Installer:
    def __init__(self, store: DeviceStore, bundle_key: Ed25519PublicKey | None, preference: Preference,
                 threads: int | None = None, limits: DownloadLimits | None = None) -> None:
        self.store, self.bundle_key, self.preference = store, bundle_key, preference
        self.threads, self.limits = threads, limits or DownloadLimits()

    def install(self, doc: BundleLocation, progress: Progress = lambda _s: None,
                cancelled: Callable[[], bool] = lambda: False) -> Installed:
        """Install `doc`'s version; `cancelled()` is polled while downloading (InstallFailed CANCELLED)."""
        progress("downloading")
        budget = Budget(self.limits, cancelled)
        manifest_bytes = self._fetch(doc.manifest_url, budget)
        signature = self._fetch(doc.signature_url, budget) if self.bundle_key is not None else None
        if self.bundle_key is not None:
            try:
                verify_signature(self.bundle_key, manifest_bytes, signature)
            except EdgeMLError as exc:
                raise InstallFailed("bad_bundle_signature", exc.message) from None
        try:  # parsing checks every file path (relative, normalized, inside the bundle): before any write
            manifest = Manifest.from_json_bytes(manifest_bytes)
        except EdgeMLError as exc:
            raise InstallFailed("unsafe_path" if isinstance(exc, IntegrityError) else "bad_manifest", exc.message) from None
        if (manifest.name, manifest.version) != (doc.model, doc.version):
            raise InstallFailed("wrong_bundle", f"desired {doc.model} {doc.version} but the manifest is "
                                                f"{manifest.name} {manifest.version}")
        try:
            artifact = select_artifact(manifest, self.preference)
        except EdgeMLError as exc:
            raise InstallFailed("no_runnable_artifact", exc.message) from None
        files = list(artifact.files) + manifest.support_files()  # the samples and a text bundle's tokenizer
        for entry in files:
            if entry.path in RESERVED:
                raise InstallFailed("unsafe_path", f"the manifest lists {entry.path!r}, a name the device store reserves")
        try:
            staging = self.store.staging_dir()
        except OSError as exc:
            raise _storage_failure(exc) from None
        try:
            self._download(doc.blob_url, files, staging, budget)
            atomic_write_bytes(staging / MANIFEST_NAME, manifest_bytes)
            if signature is not None:
                atomic_write_bytes(staging / SIGNATURE_NAME, signature)
            target = self.store.commit_staging(staging, manifest.name, manifest.version)
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise _storage_failure(exc) from None
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        progress("verifying")
        model = self.load(target, artifact)
        smoke_test(model, target)
        return Installed(model, target)

    def load(self, directory: Path, artifact: ArtifactEntry | None = None) -> Model:
        backend = artifact.backend if artifact else self.preference.backends
        precision = artifact.precision if artifact else self.preference.precisions
        try:
            return load(directory, backend=backend, precision=precision, threads=self.threads, verify_key=self.bundle_key)
        except EdgeMLError as exc:
            raise InstallFailed("load_failed", exc.message) from None

    def _fetch(self, url: str, budget: Budget) -> bytes:
        try:
            return fetch_small(url, budget=budget)
        except DownloadError as exc:
            raise InstallFailed(f"download_{exc.reason}", str(exc)) from None

    def _download(self, blob_url: str, files: list, staging: Path, budget: Budget) -> None:
        for entry in files:
            target = inside(staging, entry.path)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                download_blob(blob_url, entry.sha256, entry.size, target, self.store.root / "downloads", budget)
            except DownloadError as exc:
                raise InstallFailed(f"download_{exc.reason}", f"{entry.path}: {exc}") from None


def inside(root: Path, relative: str) -> Path:
    """root/relative, refused (InstallFailed unsafe_path) unless it stays inside root with no symlink on
    the way: the manifest's paths were checked when it was parsed; this is the second lock."""
    base = root.resolve()
    parts = relative.split("/")
    if relative.startswith("/") or "\\" in relative or "\0" in relative or any(p in ("", ".", "..") for p in parts):
        raise InstallFailed("unsafe_path", f"{relative[:64]!r} is not a normalized relative path inside the bundle")
    probe = base
    for part in parts:
        probe = probe / part
        if probe.is_symlink():
            raise InstallFailed("unsafe_path", f"{relative[:64]!r} goes through a symbolic link")
    if not probe.resolve().is_relative_to(base):
        raise InstallFailed("unsafe_path", f"{relative[:64]!r} leaves the install directory")
    return probe


def _storage_failure(exc: OSError) -> InstallFailed:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return InstallFailed("disk_full", f"the device store is full: {exc}")
    return InstallFailed("storage_error", f"the device store cannot be written: {exc}")


def smoke_test(model: Model, directory: Path) -> None:
    """Run the bundle's golden samples; outputs must match the source's within the artifact's tolerance.

    The comparison is edgeml.compare.check_golden: float outputs within twice the artifact's
    atol/rtol (another CPU than the converting one); when values are not enforced (int8), the
    predictions must agree, allowing one sample more than the validated agreement rate would.
    """
    path = directory / SAMPLES_NAME
    if not path.is_file():
        return
    try:
        inputs, expected = read_samples(path)
        outputs = model.predict(inputs)
    except EdgeMLError as exc:
        raise InstallFailed("smoke_test_failed", f"the golden samples do not run: {exc.message}") from None
    failure = check_golden(expected, outputs, Tolerance.from_dict(model.artifact.validation.get("tolerance") or {}))
    if failure:
        raise InstallFailed("smoke_test_failed", failure)


def describe(model: Model) -> dict[str, Any]:
    i = model.info
    return {"model": i.name, "version": i.version, "format": i.format, "precision": i.precision, "backend": i.backend}


__all__ = ["Installer", "InstallFailed", "Installed", "smoke_test", "describe", "json"]
