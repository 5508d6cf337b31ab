"""Resumable, size-bounded, hash-verified downloads of content-addressed blobs over HTTP."""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

from edgeml.atomic import atomic_replace

CHUNK = 1 << 16


class DownloadError(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def fetch_small(url: str, limit: int = 4 * 1024 * 1024, timeout: float = 15.0) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            data = resp.read(limit + 1)
    except urllib.error.HTTPError as exc:
        raise DownloadError("http_error", f"{url}: HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise DownloadError("unreachable", f"{url}: {getattr(exc, 'reason', exc)}") from None
    if len(data) > limit:
        raise DownloadError("too_large", f"{url} is larger than {limit} bytes")
    return data


def download_blob(base_url: str, digest: str, size: int, target: Path, partial_dir: Path,
                  timeout: float = 15.0, attempts: int = 3) -> Path:
    """Download blob `digest` (exactly `size` bytes) to `target`, resuming a partial file with Range.

    A stalled connection times out; an early end is resumed up to `attempts` times; more bytes than
    `size` or a different sha256 fail. The partial file is kept across restarts for resumption.
    """
    part = partial_dir / f"{digest}.part"
    last_error: DownloadError | None = None
    for _ in range(attempts):
        have = part.stat().st_size if part.exists() else 0
        if have > size:
            part.unlink()
            have = 0
        if have == size:
            break
        try:
            _fetch_range(f"{base_url}{digest}", part, have, size, timeout)
        except DownloadError as exc:
            last_error = exc
            if exc.reason == "too_large":
                part.unlink(missing_ok=True)
            if exc.reason in ("too_large", "http_error"):
                raise
    if not part.exists() or part.stat().st_size != size:
        raise last_error or DownloadError("incomplete", f"blob {digest[:12]} ended early")
    if _sha256(part) != digest:
        part.unlink(missing_ok=True)
        raise DownloadError("hash_mismatch", f"blob {digest[:12]}: sha256 differs from the manifest")
    atomic_replace(part, target)
    return target


def _fetch_range(url: str, part: Path, have: int, size: int, timeout: float) -> None:
    req = urllib.request.Request(url)
    if have:
        req.add_header("Range", f"bytes={have}-")
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as exc:
        raise DownloadError("http_error", f"{url}: HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise DownloadError("unreachable", f"{url}: {getattr(exc, 'reason', exc)}") from None
    with resp:
        if have and resp.status != 206:  # the server ignored Range: start over
            have = 0
        written = have
        with open(part, "ab" if have else "wb") as f:
            try:
                while chunk := resp.read(CHUNK):
                    written += len(chunk)
                    if written > size:
                        raise DownloadError("too_large", f"{url} sends more than the manifest's {size} bytes")
                    f.write(chunk)
            except (TimeoutError, OSError) as exc:
                raise DownloadError("stalled", f"{url}: {exc}") from None
            finally:
                f.flush()
                os.fsync(f.fileno())
    if written < size:
        raise DownloadError("incomplete", f"{url} ended after {written} of {size} bytes")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()
