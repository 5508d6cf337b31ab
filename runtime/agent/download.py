"""Resumable, size-bounded, hash-verified downloads of content-addressed blobs over HTTP, that cannot hang.

Every install gets one `Budget`: an overall deadline for all its downloads, a minimum rate (bytes per
second, averaged over `rate_window_s`), and a cancel check (a newer desired document preempts the
install). Bytes are read as they arrive (never a blocking read of a whole chunk), so a server dripping
one byte every few seconds fails with `too_slow` after one rate window; a server sending nothing fails
with `stalled` after the socket timeout. Each check runs between reads: a deadline or cancellation is
noticed at most one socket timeout late.
"""

from __future__ import annotations

import errno
import hashlib
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, BinaryIO

from edgeml.atomic import atomic_replace

CHUNK = 1 << 16


class DownloadError(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True)
class DownloadLimits:
    """Bounds of one install's downloads (the `edgeml serve --download-*` options)."""

    deadline_s: float = 600.0  # all files of one install, resumption included
    min_rate: float = 1024.0  # bytes per second over each rate window (0: no minimum)
    rate_window_s: float = 10.0
    stall_timeout_s: float = 15.0  # socket timeout: no byte at all for this long


@dataclass
class Budget:
    limits: DownloadLimits = field(default_factory=DownloadLimits)
    cancelled: Callable[[], bool] = lambda: False
    started: float = field(default_factory=time.monotonic)

    def check(self, url: str) -> None:
        if self.cancelled():
            raise DownloadError("cancelled", f"{url}: a newer desired document preempted this install")
        if time.monotonic() - self.started > self.limits.deadline_s:
            raise DownloadError("deadline", f"{url}: the install's downloads took longer than "
                                            f"{self.limits.deadline_s:g} s")


def fetch_small(url: str, limit: int = 4 * 1024 * 1024, budget: Budget | None = None) -> bytes:
    budget = budget or Budget()
    resp = _open(urllib.request.Request(url), budget)
    chunks: list[bytes] = []
    with resp:
        total = _stream(resp, url, budget, limit + 1, chunks.append)
    if total > limit:
        raise DownloadError("too_large", f"{url} is larger than {limit} bytes")
    return b"".join(chunks)


def download_blob(base_url: str, digest: str, size: int, target: Path, partial_dir: Path,
                  budget: Budget | None = None, attempts: int = 3) -> Path:
    """Download blob `digest` (exactly `size` bytes) to `target`, resuming a partial file with Range.

    An early end or a stalled connection is resumed up to `attempts` times within the budget; more
    bytes than `size` or a different sha256 fail (the partial is deleted: the retry starts clean). The
    partial file is kept across restarts for resumption.
    """
    budget = budget or Budget()
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
            _fetch_range(f"{base_url}{digest}", part, have, size, budget)
        except DownloadError as exc:
            last_error = exc
            if exc.reason == "too_large":
                part.unlink(missing_ok=True)
            if exc.reason not in ("incomplete", "stalled"):
                raise
    if not part.exists() or part.stat().st_size != size:
        raise last_error or DownloadError("incomplete", f"blob {digest[:12]} ended early")
    if _sha256(part) != digest:
        part.unlink(missing_ok=True)
        raise DownloadError("hash_mismatch", f"blob {digest[:12]}: sha256 differs from the manifest")
    atomic_replace(part, target)
    return target


def _open(req: urllib.request.Request, budget: Budget):
    url = req.full_url
    budget.check(url)
    try:
        return urllib.request.urlopen(req, timeout=budget.limits.stall_timeout_s)
    except urllib.error.HTTPError as exc:
        # 5xx: the server's trouble, worth a retry later; 4xx: this request will never work.
        raise DownloadError("server_error" if exc.code >= 500 else "http_error", f"{url}: HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise DownloadError("unreachable", f"{url}: {getattr(exc, 'reason', exc)}") from None


def _stream(resp, url: str, budget: Budget, limit: int, sink: Callable[[bytes], object]) -> int:
    """Read `resp` as bytes arrive into sink until EOF or `limit` bytes; enforce the budget. Returns bytes read."""
    limits = budget.limits
    total = 0
    window_start, window_bytes = time.monotonic(), 0
    try:
        while total < limit:
            budget.check(url)
            chunk = resp.read1(min(CHUNK, limit - total))
            if not chunk:
                break
            total += len(chunk)
            window_bytes += len(chunk)
            sink(chunk)
            now = time.monotonic()
            if now - window_start >= limits.rate_window_s:
                rate = window_bytes / (now - window_start)
                if rate < limits.min_rate:
                    raise DownloadError("too_slow", f"{url}: {rate:.0f} B/s over {now - window_start:.0f} s, "
                                                    f"below the minimum {limits.min_rate:g} B/s")
                window_start, window_bytes = now, 0
    except (TimeoutError, ConnectionError) as exc:
        raise DownloadError("stalled", f"{url}: {exc or 'no data'}") from None
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DownloadError("disk_full", f"{url}: {exc.strerror}") from None
        raise DownloadError("stalled", f"{url}: {exc}") from None
    return total


def _fetch_range(url: str, part: Path, have: int, size: int, budget: Budget) -> None:
    req = urllib.request.Request(url)
    if have:
        req.add_header("Range", f"bytes={have}-")
    resp = _open(req, budget)
    with resp:
        if have and resp.status != 206:  # the server ignored Range: start over
            have = 0
        with open(part, "ab" if have else "wb") as f:
            try:
                got = _stream(resp, url, budget, size - have + 1, f.write)
            finally:
                _flush(f, url)
    if have + got > size:
        raise DownloadError("too_large", f"{url} sends more than the manifest's {size} bytes")
    if have + got < size:
        raise DownloadError("incomplete", f"{url} ended after {have + got} of {size} bytes")


def _flush(f: BinaryIO, url: str) -> None:
    try:
        f.flush()
        os.fsync(f.fileno())
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DownloadError("disk_full", f"{url}: {exc.strerror}") from None
        raise


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()
