"""Install a desired version: verify, download one artifact, stage, smoke-test, swap atomically.

Any failure leaves the active model serving and returns the reason; the caller reports it.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edgeml.atomic import atomic_write_bytes
from edgeml.compare import Tolerance, check_golden
from edgeml.errors import EdgeMLError
from edgeml.manifest import MANIFEST_NAME, SAMPLES_NAME, SIGNATURE_NAME, ArtifactEntry, Manifest
from edgeml.messages import BundleLocation
from edgeml.samples import read_samples
from edgeml.signing import verify as verify_signature

from ..model import Model, load
from ..selection import Preference, select_artifact
from .download import DownloadError, download_blob, fetch_small
from .store import DeviceStore


class InstallFailed(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass
class Installed:
    model: Model
    directory: Path


Progress = Callable[[str], None]


class Installer:
    def __init__(self, store: DeviceStore, bundle_key: Ed25519PublicKey | None, preference: Preference,
                 threads: int | None = None, download_timeout: float = 15.0) -> None:
        self.store, self.bundle_key, self.preference = store, bundle_key, preference
        self.threads, self.download_timeout = threads, download_timeout

    def install(self, doc: BundleLocation, progress: Progress = lambda _s: None) -> Installed:
        progress("downloading")
        manifest_bytes = self._fetch(doc.manifest_url)
        signature = self._fetch(doc.signature_url) if self.bundle_key is not None else None
        if self.bundle_key is not None:
            try:
                verify_signature(self.bundle_key, manifest_bytes, signature)
            except EdgeMLError as exc:
                raise InstallFailed("bad_bundle_signature", exc.message) from None
        try:
            manifest = Manifest.from_json_bytes(manifest_bytes)
        except EdgeMLError as exc:
            raise InstallFailed("bad_manifest", exc.message) from None
        if (manifest.name, manifest.version) != (doc.model, doc.version):
            raise InstallFailed("wrong_bundle", f"desired {doc.model} {doc.version} but the manifest is "
                                                f"{manifest.name} {manifest.version}")
        try:
            artifact = select_artifact(manifest, self.preference)
        except EdgeMLError as exc:
            raise InstallFailed("no_runnable_artifact", exc.message) from None
        staging = self.store.staging_dir()
        try:
            self._download(doc.blob_url, manifest, artifact, staging)
            atomic_write_bytes(staging / MANIFEST_NAME, manifest_bytes)
            if signature is not None:
                atomic_write_bytes(staging / SIGNATURE_NAME, signature)
            target = self.store.commit_staging(staging, manifest.name, manifest.version)
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

    def _fetch(self, url: str) -> bytes:
        try:
            return fetch_small(url, timeout=self.download_timeout)
        except DownloadError as exc:
            raise InstallFailed(f"download_{exc.reason}", str(exc)) from None

    def _download(self, blob_url: str, manifest: Manifest, artifact: ArtifactEntry, staging: Path) -> None:
        files = list(artifact.files) + ([manifest.samples] if manifest.samples else [])
        for entry in files:
            try:
                download_blob(blob_url, entry.sha256, entry.size, staging / entry.path, self.store.root / "downloads",
                              timeout=self.download_timeout)
            except DownloadError as exc:
                raise InstallFailed(f"download_{exc.reason}", f"{entry.path}: {exc}") from None


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
