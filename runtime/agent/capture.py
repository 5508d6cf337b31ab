"""Data capture on the device: sample served requests into a bounded on-disk buffer and upload it to the fleet.

Off until the desired document carries a `capture` policy (edgeml.messages.capture.CapturePolicy). Then:

- The request path (`offer`, O(1), never blocks) keeps a request with probability `rate`, at most
  `max_per_hour` per fixed hour window (in memory: a restart starts a new window), and queues it; a full
  queue skips the request (counted).
- A writer thread turns each request into one JSON line (inputs and outputs, a device-made request id, the
  capture time) after removing every input, output and tabular column (by the bundle's feature names)
  named `sensitive`: those values never reach the disk. Lines go to STORE/capture/open.jsonl; the batch is
  sealed (renamed NNNNNNNNNNNN.jsonl, first line a header with model and version) at BATCH_ROWS rows,
  BATCH_BYTES bytes, FLUSH_S seconds or a model change. Beyond MAX_BATCHES sealed batches or MAX_BYTES on
  disk the oldest batch is dropped; its rows are counted and reported with the next upload (`dropped`).
- An uploader thread POSTs the oldest sealed batch to the policy's URL with its bearer token and deletes
  it only after a 2xx; network errors and 5xx/408/429 back off (BACKOFF_S ... MAX_BACKOFF_S); any other 4xx
  is a batch the fleet will never take: it is dropped and counted (`rejected`).
- STORE/capture/policy.json shows the policy being applied (without its token).
- The buffer survives restarts (uploads resume once the retained desired document brings the policy
  back). A desired document without a policy switches capture off and deletes the buffer.
"""

from __future__ import annotations

import json
import logging
import math
import os
import queue
import random
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from edgeml.messages.capture import MAX_BATCH_ROWS, MAX_TENSOR_VALUES, CapturePolicy

log = logging.getLogger("edgeml.agent.capture")

QUEUE_SIZE = 256  # sampled requests waiting for the writer
BATCH_ROWS = 100
BATCH_BYTES = 1 << 20  # a batch is sealed at this size (the fleet accepts uploads up to 8 MiB)
FLUSH_S = 2.0  # an open batch older than this is sealed
MAX_BATCHES = 200  # sealed batches kept on disk
MAX_BYTES = 64 << 20  # bytes of sealed batches kept on disk
BACKOFF_S, MAX_BACKOFF_S = 1.0, 60.0
UPLOAD_TIMEOUT_S = 30.0
HOUR_S = 3600.0
OPEN = "open.jsonl"


class CaptureSampler:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.policy: CapturePolicy | None = None
        self._applied = False  # the first desired document decides, even when it switches capture off
        self.counts = {"sampled": 0, "skipped": 0, "over_budget": 0, "written": 0, "uploaded": 0, "dropped": 0,
                       "rejected": 0, "too_large": 0}
        self._window = (0.0, 0)  # (start of the hour window, requests taken in it)
        self._lock = threading.Lock()
        self._queue: queue.Queue[tuple[float, Any, dict, dict] | None] = queue.Queue(QUEUE_SIZE)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._started = False
        self._open: tuple[str, str] | None = None  # (model, version) of open.jsonl
        self._open_rows = self._open_bytes = 0
        self._open_since = 0.0
        self._unreported = 0  # dropped rows not yet reported to the fleet (kept in STORE/capture/dropped)

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> "CaptureSampler":
        """Recover the buffer; the writer and uploader threads start with the first policy (none while off)."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._unreported = _read_int(self.root / "dropped")
        self._seal()  # a batch left open by a restart is complete as it is
        self._started = True
        return self

    def _run_threads(self) -> None:
        if self._threads or not self._started or self._stop.is_set():
            return
        for target, name in ((self._write_loop, "agent-capture-writer"), (self._upload_loop, "agent-capture-upload")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass
        for t in self._threads:
            t.join(timeout=5)

    def update(self, policy: CapturePolicy | None) -> None:
        """Apply the desired document's policy; None switches capture off and deletes the buffer."""
        if policy == self.policy and self._applied:
            return
        self._applied, self.policy = True, policy
        self._window = (0.0, 0)  # a new policy starts a new hourly budget
        if policy is None:
            self._clear()
        self._save_policy(policy)
        if policy is not None:
            self._run_threads()
        log.info("data capture %s", "off" if policy is None else
                 f"on: rate {policy.rate:g}, at most {policy.max_per_hour or 'unlimited'} per hour, "
                 f"{len(policy.sensitive)} sensitive name(s) excluded")
        self._wake.set()

    def _save_policy(self, policy: CapturePolicy | None) -> None:
        """STORE/capture/policy.json: the policy being applied, without its token (absent: capture off)."""
        path = self.root / "policy.json"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            if policy is None:
                path.unlink(missing_ok=True)
                return
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"rate": policy.rate, "max_per_hour": policy.max_per_hour,
                                       "sensitive": list(policy.sensitive)}))
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("capture: cannot record the policy in %s: %s", path, exc)

    def _clear(self) -> None:
        with self._lock:
            for f in self.root.glob("*.jsonl"):
                f.unlink(missing_ok=True)
            self._open, self._open_rows, self._open_bytes = None, 0, 0
            self._set_unreported(0)

    # -- request path: O(1), never blocks --------------------------------------------------------
    def offer(self, model: Any, feeds: dict[str, np.ndarray], outputs: dict[str, np.ndarray], _seconds: float) -> None:
        policy = self.policy
        if policy is None or random.random() >= policy.rate:
            return
        now = time.time()
        if policy.max_per_hour is not None:
            with self._lock:
                start, taken = self._window
                if now - start >= HOUR_S:
                    start, taken = now, 0
                if taken >= policy.max_per_hour:
                    self.counts["over_budget"] += 1
                    return
                self._window = (start, taken + 1)
        try:
            self._queue.put_nowait((now, model, feeds, outputs))
            self.counts["sampled"] += 1
        except queue.Full:
            self.counts["skipped"] += 1

    # -- the writer ------------------------------------------------------------------------------
    def _write_loop(self) -> None:
        while not self._stop.is_set():
            try:
                item = self._queue.get(timeout=FLUSH_S / 2)
            except queue.Empty:
                item = False
            if item is None:
                return
            try:
                if item and self.policy is not None:
                    self._write(*item, self.policy)
                if self._open is not None and time.monotonic() - self._open_since >= FLUSH_S:
                    self._seal()
            except Exception:  # a full disk or the like: the request is lost, the daemon is not
                log.exception("capture: cannot write a captured request")

    def _write(self, ts: float, model: Any, feeds: dict, outputs: dict, policy: CapturePolicy) -> None:
        excluded = set(policy.sensitive)
        names = {s.name: s.feature_names for s in getattr(model, "inputs", [])}
        row = {"request_id": uuid.uuid4().hex, "ts": ts,
               "inputs": _tensors(feeds, excluded, names), "outputs": _tensors(outputs, excluded, {})}
        line = json.dumps(row, separators=(",", ":")).encode() + b"\n"
        if len(line) > BATCH_BYTES * 4:
            self.counts["too_large"] += 1
            return
        key = (model.info.name, model.info.version)
        with self._lock:
            if self._open is not None and (self._open != key or self._open_rows >= BATCH_ROWS
                                           or self._open_bytes + len(line) > BATCH_BYTES):
                self._seal_locked()
            path = self.root / OPEN
            with open(path, "ab") as f:
                if self._open is None:
                    f.write(json.dumps({"model": key[0], "version": key[1]}).encode() + b"\n")
                    self._open, self._open_since = key, time.monotonic()
                f.write(line)  # in the OS on return (a killed daemon keeps it); fsynced when sealed
            self._open_rows += 1
            self._open_bytes += len(line)
            self.counts["written"] += 1

    def _seal(self) -> None:
        with self._lock:
            self._seal_locked()

    def _seal_locked(self) -> None:
        path = self.root / OPEN
        if path.exists():
            if path.stat().st_size > 0:
                with open(path, "rb+") as f:
                    os.fsync(f.fileno())
                sealed = self._sealed()
                n = int(sealed[-1].stem) + 1 if sealed else 1
                os.replace(path, self.root / f"{n:012d}.jsonl")
            else:
                path.unlink()
            self._enforce_bounds()
            self._wake.set()
        self._open, self._open_rows, self._open_bytes = None, 0, 0

    def _sealed(self) -> list[Path]:
        return sorted(p for p in self.root.glob("*.jsonl") if p.stem.isdigit())

    def _enforce_bounds(self) -> None:
        sealed = self._sealed()
        sizes = [p.stat().st_size for p in sealed]
        while sealed and (len(sealed) > MAX_BATCHES or sum(sizes) > MAX_BYTES):
            oldest = sealed.pop(0)
            sizes.pop(0)
            rows = max(0, _count_lines(oldest) - 1)
            oldest.unlink(missing_ok=True)
            self.counts["dropped"] += rows
            self._set_unreported(self._unreported + rows)
            log.warning("capture buffer full: dropped the oldest batch (%d rows)", rows)

    def _set_unreported(self, n: int) -> None:
        self._unreported = n
        tmp = self.root / "dropped.tmp"
        tmp.write_text(str(n))
        os.replace(tmp, self.root / "dropped")

    # -- the uploader ----------------------------------------------------------------------------
    def _upload_loop(self) -> None:
        delay = 0.0
        while not self._stop.is_set():
            self._wake.wait(delay or 5.0)
            self._wake.clear()
            if self._stop.is_set():
                return
            policy = self.policy
            if policy is None:
                continue
            try:
                done = self._upload_oldest(policy)
                delay = 0.0 if done else min(MAX_BACKOFF_S, max(BACKOFF_S, delay * 2))
                if done and self._sealed():
                    self._wake.set()  # more to send
            except Exception:
                log.exception("capture: upload failed")
                delay = min(MAX_BACKOFF_S, max(BACKOFF_S, delay * 2))

    def _upload_oldest(self, policy: CapturePolicy) -> bool:
        """Upload the oldest sealed batch; True when there was nothing to do or the fleet took (or refused) it."""
        with self._lock:
            sealed = self._sealed()
            if not sealed:
                return True
            path, dropped = sealed[0], self._unreported
            lines = path.read_bytes().splitlines()
        if not lines:
            path.unlink(missing_ok=True)
            return True
        try:
            header = json.loads(lines[0])
            body = (b'{"model":' + json.dumps(header["model"]).encode() + b',"version":'
                    + json.dumps(header["version"]).encode() + b',"dropped":' + str(dropped).encode()
                    + b',"rows":[' + b",".join(lines[1:1 + MAX_BATCH_ROWS]) + b"]}")
        except (ValueError, KeyError, TypeError):
            log.error("capture: batch %s is corrupt; dropped", path.name)
            path.unlink(missing_ok=True)
            return True
        req = urllib.request.Request(policy.url, data=body, method="POST", headers={
            "Content-Type": "application/json", "Authorization": f"Bearer {policy.token}"})
        try:
            with urllib.request.urlopen(req, timeout=UPLOAD_TIMEOUT_S) as resp:
                resp.read()
        except urllib.error.HTTPError as exc:
            if exc.code in (408, 429) or exc.code >= 500:
                log.warning("capture: the fleet answered %s; retrying later", exc.code)
                return False
            detail = exc.read()[:300].decode(errors="replace")
            log.error("capture: the fleet refused batch %s (%s: %s); dropped", path.name, exc.code, detail)
            self.counts["rejected"] += len(lines) - 1
            path.unlink(missing_ok=True)
            return True
        except (urllib.error.URLError, OSError) as exc:
            log.warning("capture: cannot reach the fleet (%s); retrying later", exc)
            return False
        with self._lock:
            path.unlink(missing_ok=True)
            self.counts["uploaded"] += len(lines) - 1
            self._set_unreported(max(0, self._unreported - dropped))
        return True


def _tensors(arrays: dict[str, np.ndarray], excluded: set[str], features: dict[str, Any]) -> dict[str, Any]:
    """Captured tensors without the excluded names: whole tensors by name, tabular columns by feature name."""
    out = {}
    for name, arr in arrays.items():
        if name in excluded:
            continue
        arr = np.asarray(arr)
        cols = features.get(name)
        kept = None
        if cols and arr.ndim >= 2 and arr.shape[-1] == len(cols):
            keep = [i for i, c in enumerate(cols) if c not in excluded]
            if not keep:
                continue  # every column is sensitive
            kept = [cols[i] for i in keep]
            arr = arr[..., keep]
        elif cols and excluded.intersection(cols):
            continue  # feature names that do not map onto columns: never risk a sensitive value
        if arr.size > MAX_TENSOR_VALUES:
            continue
        entry = {"dtype": arr.dtype.name if arr.dtype.kind in "biuf" else "str", "shape": list(arr.shape),
                 "data": _values(arr)}
        if kept is not None:
            entry["features"] = kept
        out[name] = entry
    return out


def _values(arr: np.ndarray) -> list[Any]:
    flat = arr.reshape(-1)
    if arr.dtype.kind == "f":
        return [v if math.isfinite(v) else None for v in flat.tolist()]  # missing values stay missing (null)
    if arr.dtype.kind in "biu":
        return [int(v) for v in flat.tolist()]
    return [v.decode(errors="replace") if isinstance(v, bytes) else str(v) for v in flat.tolist()]


def _count_lines(path: Path) -> int:
    try:
        with open(path, "rb") as f:
            return sum(1 for _ in f)
    except OSError:
        return 0


def _read_int(path: Path) -> int:
    try:
        return max(0, int(path.read_text().strip()))
    except (OSError, ValueError):
        return 0
