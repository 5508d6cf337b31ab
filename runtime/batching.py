"""Micro-batching: join concurrent requests into one backend call (models with a dynamic batch axis).

A worker thread takes the first waiting request, then waits at most `max_delay` for more until
`max_batch` samples are gathered, runs them as one batch and hands each caller its slice. Requests
are checked by their callers first (`Model.prepare`, or the OIP decoder with the model's own input
checks), so one bad request never fails the others. Off by default: it trades a little latency for throughput under concurrent load.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from edgeml.errors import UsageError

from .inputs import Feeds

_STOP = object()


@dataclass(frozen=True)
class BatchOptions:
    max_batch: int = 1  # 1 = off
    max_delay_ms: float = 2.0

    @property
    def enabled(self) -> bool:
        return self.max_batch > 1

    def check(self) -> "BatchOptions":
        if self.max_batch < 1:
            raise UsageError(f"--max-batch must be at least 1, got {self.max_batch}")
        if self.max_delay_ms < 0:
            raise UsageError(f"--max-delay-ms must be 0 or more, got {self.max_delay_ms}")
        return self


@dataclass
class _Pending:
    feeds: Feeds
    size: int
    signature: tuple
    done: threading.Event = field(default_factory=threading.Event)
    result: dict[str, np.ndarray] | None = None
    error: BaseException | None = None


class MicroBatcher:
    """Run a model's prepared feeds in joined batches on one worker thread."""

    def __init__(self, model, options: BatchOptions) -> None:
        if not model.dynamic_batch:
            raise UsageError(f"micro-batching needs a dynamic batch axis; {model.name} has fixed input shapes "
                             f"({', '.join(s.describe() for s in model.inputs)}); drop --max-batch")
        self.model = model
        self.max_batch = options.max_batch
        self.max_delay = options.max_delay_ms / 1000.0
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        self._lock = threading.Lock()
        self._worker = threading.Thread(target=self._loop, name=f"edgeml-batcher-{model.name}", daemon=True)
        self._worker.start()

    def run(self, feeds: Feeds) -> dict[str, np.ndarray]:
        """Run prepared feeds, possibly joined with other callers'; blocks until done."""
        size = len(next(iter(feeds.values())))
        pending = _Pending(feeds, size, tuple((k, v.shape[1:], v.dtype.str) for k, v in feeds.items()))
        with self._lock:
            closed = self._closed
            if not closed:
                self._queue.put(pending)
        if closed:  # a request that raced a model swap: run it alone on this (old) model
            return self.model.run(feeds)
        pending.done.wait()
        if pending.error is not None:
            raise pending.error
        return pending.result  # type: ignore[return-value]

    def close(self) -> None:
        """Finish every queued request, then stop the worker."""
        with self._lock:
            self._closed = True
            self._queue.put(_STOP)
        self._worker.join(timeout=30)

    def _loop(self) -> None:
        carry: _Pending | None = None
        while True:
            first = carry if carry is not None else self._queue.get()
            carry = None
            if first is _STOP:
                return
            batch, total = [first], first.size
            deadline = time.perf_counter() + self.max_delay
            stop = False
            while total < self.max_batch:
                timeout = deadline - time.perf_counter()
                try:
                    item = self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                if item.signature != first.signature or total + item.size > self.max_batch:
                    carry = item  # runs in the next batch
                    break
                batch.append(item)
                total += item.size
            self._run(batch)
            if stop:
                if carry is not None:
                    self._run([carry])
                self._drain()
                return

    def _drain(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not _STOP:
                self._run([item])

    def _run(self, batch: list[_Pending]) -> None:
        try:
            if len(batch) == 1:
                batch[0].result = self.model.run(batch[0].feeds)
            else:
                joined = {k: np.concatenate([p.feeds[k] for p in batch]) for k in batch[0].feeds}
                outputs = self.model.run(joined)
                total = sum(p.size for p in batch)
                if any(np.ndim(v) == 0 or len(v) != total for v in outputs.values()):
                    for p in batch:  # outputs without a batch axis cannot be split: run one by one
                        p.result = self.model.run(p.feeds)
                else:
                    start = 0
                    for p in batch:
                        p.result = {k: v[start:start + p.size] for k, v in outputs.items()}
                        start += p.size
        except BaseException as exc:  # every waiting caller gets the error, none hangs
            for p in batch:
                if p.result is None:
                    p.error = exc
        finally:
            for p in batch:
                p.done.set()
