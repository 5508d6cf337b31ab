"""The MQTT documents between the fleet and its devices: desired (with shadow spec), reported, status, events, telemetry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Self

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..protocol import DEVICE_ID_RE, ProtocolError, sign_document, verify_document
from .capture import CapturePolicy
from .counters import CacheTelemetry, CaptureTelemetry
from .fields import (
    MAX_SEQ, MAX_COUNT, MAX_TIME, MAX_NAME, MAX_URL, MAX_BINS, CODE_RE, Json, _bad, _object, _get, _int, _num,
    _str, _text, _list, _counts, _opt, _req, _load, _drop_none, _Message,
)

# -- histograms --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LatencyHistogram(_Message):
    """Upper bounds in seconds (increasing) and counts per bucket; the last count is +Inf."""

    buckets: tuple[float, ...]
    counts: tuple[int, ...]

    @classmethod
    def parse(cls, obj: Any, where: str = "latency") -> Self:
        obj = _object(_load(obj, where), where)
        buckets = tuple(_num(v, f"{where}.buckets[{i}]")
                        for i, v in enumerate(_list(_get(obj, "buckets", where, True), f"{where}.buckets", MAX_BINS)))
        if any(b >= a for a, b in zip(buckets[1:], buckets)):
            raise _bad(f"{where}.buckets", "must be strictly increasing")
        counts = _counts(_get(obj, "counts", where, True), f"{where}.counts", len(buckets) + 1)
        return cls(buckets, counts)

    def to_dict(self) -> Json:
        return {"buckets": list(self.buckets), "counts": list(self.counts)}


# -- desired -----------------------------------------------------------------------------------------
MAX_VALIDITY_S = 366 * 86400.0  # a desired document valid for longer than this is refused (stale)
CLOCK_SKEW_S = 300.0  # a document issued further in the future than this is refused (stale)

class BundleLocation(Protocol):
    """What the installer needs to fetch one version: `Desired` and `ShadowSpec` both are one."""

    model: str
    version: str
    manifest_url: str
    signature_url: str
    blob_url: str


def _location(obj: Json, where: str) -> dict[str, str]:
    return {"model": _req(obj, "model", where, _str), "version": _req(obj, "version", where, _str),
            **{k: _req(obj, k, where, _str, MAX_URL) for k in ("manifest_url", "signature_url", "blob_url")}}


@dataclass(frozen=True)
class ShadowSpec(_Message):
    """A candidate installed beside the active model; `sample` (0, 1] overrides the device's mirror fraction."""

    model: str
    version: str
    manifest_url: str
    signature_url: str
    blob_url: str
    sample: float | None = None

    @classmethod
    def parse(cls, obj_or_bytes: Any, where: str = "shadow") -> Self:
        obj = _object(_load(obj_or_bytes, where), where)
        return cls(**_location(obj, where), sample=_opt(obj, "sample", where, _num, 0.0, 1.0, lo_open=True))

    def to_dict(self) -> Json:
        return _drop_none({"model": self.model, "version": self.version, "manifest_url": self.manifest_url,
                           "signature_url": self.signature_url, "blob_url": self.blob_url, "sample": self.sample})


@dataclass(frozen=True)
class Desired(_Message):
    """fleet -> device (retained, signed): the version a device must run, with a sequence number.

    Freshness (TUF-style): `issued_at` and `expires_at` (seconds since the epoch) bound the document's
    validity. The fleet re-signs every retained document before it expires with the SAME `seq` and
    content and new dates (fleet/freshness.py); a device accepts such a re-signed document without
    reinstalling, and refuses a document with no expiry or an expired one (see `freshness()`).
    """

    device_id: str
    seq: int
    model: str
    version: str
    manifest_url: str
    signature_url: str
    blob_url: str
    issued_at: float | None = None
    shadow: ShadowSpec | None = None
    expires_at: float | None = None
    capture: CapturePolicy | None = None  # data capture on (fleet/capture.py); absent: off

    @classmethod
    def parse(cls, obj_or_bytes: Any) -> Self:
        obj = _load(obj_or_bytes, "desired document")
        shadow = obj.get("shadow")
        issued = _opt(obj, "issued_at", "", _num, 0.0, MAX_TIME)
        expires = _opt(obj, "expires_at", "", _num, 0.0, MAX_TIME)
        if issued is not None and expires is not None and expires < issued:
            raise _bad("expires_at", "must not be before issued_at")
        return cls(device_id=_req(obj, "device_id", "", _str, 128, DEVICE_ID_RE), seq=_req(obj, "seq", "", _int, 0, MAX_SEQ),
                   **_location(obj, ""), issued_at=issued,
                   shadow=None if shadow is None else ShadowSpec.parse(shadow), expires_at=expires,
                   capture=None if obj.get("capture") is None else CapturePolicy.parse(obj["capture"]))

    @classmethod
    def verify(cls, payload: bytes, key: Ed25519PublicKey | None) -> Self:
        """Check a signed wire document's signature (skipped when key is None), then parse it."""
        return cls.parse(verify_document(payload, key))

    def freshness(self, now: float, max_validity_s: float = MAX_VALIDITY_S, skew_s: float = CLOCK_SKEW_S) -> str | None:
        """None when the document is fresh at `now`, else the refusal reason: "stale" (no dates, issued in
        the future beyond the clock skew, or valid for longer than `max_validity_s`) or "expired"."""
        if self.issued_at is None or self.expires_at is None:
            return "stale"
        if self.issued_at > now + skew_s or self.expires_at - self.issued_at > max_validity_s:
            return "stale"
        return "expired" if now >= self.expires_at else None

    def to_dict(self) -> Json:
        return _drop_none({"device_id": self.device_id, "seq": self.seq, "model": self.model, "version": self.version,
                           "manifest_url": self.manifest_url, "signature_url": self.signature_url,
                           "blob_url": self.blob_url, "issued_at": self.issued_at, "expires_at": self.expires_at,
                           "shadow": self.shadow.to_dict() if self.shadow else None,
                           "capture": self.capture.to_dict() if self.capture else None})

    def sign(self, key: Ed25519PrivateKey) -> bytes:
        """The signed wire form: {"doc": ..., "sig": ...} (edgeml.protocol.sign_document)."""
        return sign_document(self.to_dict(), key)


# -- reported ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ShadowState(_Message):
    """The shadow candidate as the device reports it."""

    model: str
    version: str
    state: str | None = None
    error: str | None = None

    @classmethod
    def parse(cls, obj: Any, where: str = "shadow") -> Self:
        obj = _object(_load(obj, where), where)
        return cls(_req(obj, "model", where, _str), _req(obj, "version", where, _str),
                   _opt(obj, "state", where, _str, 64, CODE_RE), _opt(obj, "error", where, _text))

    def to_dict(self) -> Json:
        return {"model": self.model, "version": self.version, "state": self.state, "error": self.error}


def _tags(value: Any, name: str) -> dict[str, str]:
    obj = _object(value, name, 64)
    return {_str(k, f"{name} key", 64): _text(v, f"{name}.{k}", MAX_NAME) for k, v in obj.items()}


@dataclass(frozen=True)
class Reported(_Message):
    """device -> fleet (retained): what the device runs and its install state."""

    state: str
    seq: int = 0
    error: str | None = None
    model: str | None = None
    version: str | None = None
    format: str | None = None
    precision: str | None = None
    backend: str | None = None
    arch: str | None = None
    backends: tuple[str, ...] | None = None
    tags: dict[str, str] | None = None
    ts: float | None = None
    shadow: ShadowState | None = None

    @classmethod
    def parse(cls, obj_or_bytes: Any) -> Self:
        obj = _load(obj_or_bytes, "reported document")
        backends = _opt(obj, "backends", "", _list, 32)
        shadow = obj.get("shadow")
        return cls(
            state=_req(obj, "state", "", _str, 64, CODE_RE), seq=_opt(obj, "seq", "", _int, 0, MAX_SEQ) or 0,
            error=_opt(obj, "error", "", _text),
            **{k: _opt(obj, k, "", _str) for k in ("model", "version")},
            **{k: _opt(obj, k, "", _str, 64) for k in ("format", "precision", "backend", "arch")},
            backends=None if backends is None else tuple(_str(b, f"backends[{i}]", 64) for i, b in enumerate(backends)),
            tags=_opt(obj, "tags", "", _tags), ts=_opt(obj, "ts", "", _num, 0.0, MAX_TIME),
            shadow=None if shadow is None else ShadowState.parse(shadow))

    def to_dict(self) -> Json:
        d: Json = {"state": self.state, "error": self.error, "seq": self.seq, "model": self.model, "version": self.version}
        d.update(_drop_none({"format": self.format, "precision": self.precision, "backend": self.backend,
                             "arch": self.arch, "backends": None if self.backends is None else list(self.backends),
                             "tags": self.tags, "ts": self.ts,
                             "shadow": self.shadow.to_dict() if self.shadow else None}))
        return d


# -- status ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Status:
    """device -> fleet (retained): b"online", or b"offline" (the device's Last Will). Plain text, not JSON."""

    online: bool

    VALUES = ("online", "offline")

    @classmethod
    def parse(cls, payload: bytes | str) -> Self:
        text = payload.decode(errors="replace") if isinstance(payload, (bytes, bytearray)) else str(payload)
        text = text.strip()
        if text not in cls.VALUES:
            raise ProtocolError("bad_schema", "status must be online or offline", field="status")
        return cls(text == "online")

    @property
    def value(self) -> str:
        return "online" if self.online else "offline"

    def to_bytes(self) -> bytes:
        return self.value.encode()


ONLINE, OFFLINE = Status(True), Status(False)


# -- events ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Event(_Message):
    """device -> fleet: install started / installed / failed, desired rejected, shadow installed / failed."""

    event: str
    ts: float | None = None
    reason: str | None = None
    detail: str | None = None
    model: str | None = None
    version: str | None = None
    seq: int | None = None
    format: str | None = None
    precision: str | None = None
    backend: str | None = None

    @classmethod
    def parse(cls, obj_or_bytes: Any) -> Self:
        obj = _load(obj_or_bytes, "event")
        return cls(
            event=_req(obj, "event", "", _str, 64, CODE_RE), ts=_opt(obj, "ts", "", _num, 0.0, MAX_TIME),
            reason=_opt(obj, "reason", "", _str, 64), detail=_opt(obj, "detail", "", _text),
            model=_opt(obj, "model", "", _str), version=_opt(obj, "version", "", _str),
            seq=_opt(obj, "seq", "", _int, 0, MAX_SEQ),
            **{k: _opt(obj, k, "", _str, 64) for k in ("format", "precision", "backend")})

    def to_dict(self) -> Json:
        return _drop_none({"event": self.event, "ts": self.ts, "reason": self.reason, "detail": self.detail,
                           "model": self.model, "version": self.version, "seq": self.seq, "format": self.format,
                           "precision": self.precision, "backend": self.backend})


# -- telemetry ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ShadowTelemetry(_Message):
    """The interval's shadow comparison: agreement and latency of the candidate, never its outputs."""

    model: str
    version: str
    state: str | None = None
    requests: int = 0
    agreed: int = 0
    errors: int = 0
    skipped: int = 0
    latency: LatencyHistogram | None = None
    agreement: float | None = None
    latency_p50_s: float | None = None
    latency_p99_s: float | None = None

    @classmethod
    def parse(cls, obj: Any, where: str = "shadow") -> Self:
        obj = _object(_load(obj, where), where)
        counts = {k: _opt(obj, k, where, _int) or 0 for k in ("requests", "agreed", "errors", "skipped")}
        if counts["agreed"] + counts["errors"] > counts["requests"]:
            raise _bad(f"{where}.agreed", "plus errors must not exceed requests")
        latency = obj.get("latency")
        return cls(_req(obj, "model", where, _str), _req(obj, "version", where, _str),
                   _opt(obj, "state", where, _str, 64, CODE_RE), **counts,
                   latency=None if latency is None else LatencyHistogram.parse(latency, f"{where}.latency"),
                   agreement=_opt(obj, "agreement", where, _num, 0.0, 1.0),
                   latency_p50_s=_opt(obj, "latency_p50_s", where, _num), latency_p99_s=_opt(obj, "latency_p99_s", where, _num))

    def to_dict(self) -> Json:
        d: Json = {"model": self.model, "version": self.version, "state": self.state, "requests": self.requests,
                   "agreed": self.agreed, "errors": self.errors, "skipped": self.skipped, "agreement": self.agreement}
        d.update(_drop_none({"latency": self.latency.to_dict() if self.latency else None,
                             "latency_p50_s": self.latency_p50_s, "latency_p99_s": self.latency_p99_s}))
        return d


def _features(value: Any, name: str) -> dict[str, tuple[int, ...]]:
    obj = _object(value, name)
    return {_str(k, f"{name} key"): _counts(v, f"{name}.{k}") for k, v in obj.items()}


@dataclass(frozen=True)
class Telemetry(_Message):
    """device -> fleet, every interval: counts since the previous message, on the bundle's bins."""

    seq: int
    interval_s: float
    requests: int
    errors: int
    ts: float | None = None
    model: str | None = None
    version: str | None = None
    latency: LatencyHistogram | None = None
    cpu_percent: float | None = None
    rss_bytes: int | None = None
    features: dict[str, tuple[int, ...]] | None = None
    prediction: tuple[int, ...] | None = None
    dropped: int | None = None  # outbox messages the device dropped while offline
    shadow: ShadowTelemetry | None = None
    cache: CacheTelemetry | None = None  # prediction cache, when it is on
    capture: CaptureTelemetry | None = None  # data capture, when a policy is applied

    @classmethod
    def parse(cls, obj_or_bytes: Any) -> Self:
        obj = _load(obj_or_bytes, "telemetry")
        requests, errors = _req(obj, "requests", "", _int), _req(obj, "errors", "", _int)
        if errors > requests:
            raise _bad("errors", "must not exceed requests")
        latency, shadow, prediction = obj.get("latency"), obj.get("shadow"), obj.get("prediction")
        cache, capture = obj.get("cache"), obj.get("capture")
        return cls(
            seq=_req(obj, "seq", "", _int, 0, MAX_SEQ),
            interval_s=_req(obj, "interval_s", "", _num, 0.0, 366 * 86400.0, lo_open=True),
            requests=requests, errors=errors, ts=_opt(obj, "ts", "", _num, 0.0, MAX_TIME),
            model=_opt(obj, "model", "", _str), version=_opt(obj, "version", "", _str),
            latency=None if latency is None else LatencyHistogram.parse(latency),
            cpu_percent=_opt(obj, "cpu_percent", "", _num, 0.0, 100.0 * 4096),
            rss_bytes=_opt(obj, "rss_bytes", "", _int, 0, MAX_COUNT),
            features=_opt(obj, "features", "", _features),
            prediction=None if prediction is None else _counts(prediction, "prediction"),
            dropped=_opt(obj, "dropped", "", _int),
            shadow=None if shadow is None else ShadowTelemetry.parse(shadow),
            cache=None if cache is None else CacheTelemetry.parse(cache),
            capture=None if capture is None else CaptureTelemetry.parse(capture))

    def to_dict(self) -> Json:
        d: Json = {"seq": self.seq, "ts": self.ts, "interval_s": self.interval_s, "model": self.model,
                   "version": self.version, "requests": self.requests, "errors": self.errors}
        if d["ts"] is None:
            del d["ts"]
        d.update(_drop_none({
            "latency": self.latency.to_dict() if self.latency else None, "cpu_percent": self.cpu_percent,
            "rss_bytes": self.rss_bytes,
            "features": None if self.features is None else {k: list(v) for k, v in self.features.items()},
            "prediction": None if self.prediction is None else list(self.prediction), "dropped": self.dropped,
            "shadow": self.shadow.to_dict() if self.shadow else None,
            "cache": self.cache.to_dict() if self.cache else None,
            "capture": self.capture.to_dict() if self.capture else None}))
        return d




@dataclass(frozen=True)
class TelemetryAck(_Message):
    """fleet -> device (retained, QoS 1, on PREFIX/devices/ID/telemetry_ack): the highest telemetry `seq`
    of this device the fleet has durably stored (each (device, seq) is stored once).

    The device drops every spooled message with seq <= this one. That is safe because one MQTT session
    delivers a device's messages in order and, after every reconnect, the device resends only its oldest
    unacknowledged message until that one is acknowledged (runtime/agent/outbox.py): messages the broker
    lost while the fleet was away are resent before anything newer can be acknowledged over them."""

    seq: int

    @classmethod
    def parse(cls, obj_or_bytes: Any) -> Self:
        obj = _load(obj_or_bytes, "telemetry ack")
        return cls(seq=_req(obj, "seq", "", _int, 0, MAX_SEQ))

    def to_dict(self) -> Json:
        return {"seq": self.seq}
