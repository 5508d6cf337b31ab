"""The typed wire messages (edgeml.messages): strict parsing, canonical serialization, and their use at
the fleet's ingest boundary (a bad message is dropped and counted, never stored or raised)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgeml.errors import BundleError, EdgeMLError, SourceError, UsageError
from edgeml.manifest import Manifest
from edgeml.messages import (RUN_MANIFEST_NAME, ArtifactDetails, Desired, Event, LatencyHistogram, Reported, RunInput,
                             RunManifest, ShadowSpec, ShadowState, ShadowTelemetry, Status, Telemetry)
from edgeml.protocol import ProtocolError, canonical_json, sign_document, verify_document

BASE = "http://fleet.local:8000/api/v1"
SHA = "ab" * 32


def locations(version: str) -> dict[str, str]:
    return {"model": "iris", "version": version, "manifest_url": f"{BASE}/models/iris/{version}/manifest.json",
            "signature_url": f"{BASE}/models/iris/{version}/manifest.sig", "blob_url": f"{BASE}/blobs/"}


def old_desired(shadow: bool) -> dict:
    """A desired document exactly as fleet/devices.py built it before the typed contract."""
    doc = {"device_id": "dev-01", "seq": 42, **locations("2.0"), "issued_at": time.time()}
    if shadow:
        doc["shadow"] = locations("3.0")
    return doc


def telemetry(**changes) -> dict:
    msg = {"seq": 7, "ts": 1.7e9, "interval_s": 10.0, "model": "iris", "version": "2.0", "requests": 12, "errors": 1,
           "latency": {"buckets": [0.001, 0.01, 0.1], "counts": [5, 4, 2, 1]}, "cpu_percent": 12.5,
           "rss_bytes": 50_000_000, "features": {"sepal length": [1, 2, 3]}, "prediction": [4, 4, 4], "dropped": 0,
           "shadow": {"model": "iris", "version": "3.0", "state": "active", "requests": 3, "agreed": 2, "errors": 1,
                      "skipped": 0, "agreement": 1.0, "latency": {"buckets": [0.01], "counts": [2, 0]},
                      "latency_p50_s": 0.002, "latency_p99_s": 0.004}}
    for key, value in changes.items():
        if value is DELETE:
            msg.pop(key)
        else:
            msg[key] = value
    return msg


DELETE = object()


# -- desired: byte-identical signatures ------------------------------------------------------------
@pytest.mark.parametrize("shadow", [False, True])
def test_a_desired_document_signs_to_the_same_bytes_as_before(shadow):
    key = Ed25519PrivateKey.generate()
    doc = old_desired(shadow)
    old_wire = sign_document(doc, key)
    built = Desired("dev-01", 42, **locations("2.0"), issued_at=doc["issued_at"],
                    shadow=ShadowSpec(**locations("3.0")) if shadow else None)
    assert built.sign(key) == old_wire
    assert Desired.parse(doc).sign(key) == old_wire
    assert verify_document(built.sign(key), key.public_key()) == doc
    assert Desired.verify(old_wire, key.public_key()) == built


def test_the_fleet_builds_desired_documents_through_the_contract(tmp_path):
    from edgeml.fleet.devices import DeviceRegistry
    from edgeml.protocol import Topics

    registry = DeviceRegistry(None, Topics(), Ed25519PrivateKey.generate(), "http://fleet.local:8000/")
    doc = registry.desired_document("dev-01", 42, "iris", "2.0", shadow=("iris", "3.0"))
    assert isinstance(doc, Desired)
    expected = {**old_desired(True), "issued_at": doc.issued_at, "expires_at": doc.expires_at}
    assert canonical_json(doc.to_dict()) == canonical_json(expected)


def test_desired_without_signature_url_or_with_a_bad_device_id_is_refused():
    doc = old_desired(False)
    del doc["signature_url"]
    with pytest.raises(ProtocolError, match="signature_url") as exc:
        Desired.parse(doc)
    assert exc.value.reason == "bad_schema" and exc.value.field == "signature_url"
    with pytest.raises(ProtocolError, match="device_id"):
        Desired.parse({**old_desired(False), "device_id": "bad id!"})


def test_a_forged_desired_signature_is_refused():
    doc = old_desired(False)
    wire = sign_document(doc, Ed25519PrivateKey.generate())
    with pytest.raises(ProtocolError) as exc:
        Desired.verify(wire, Ed25519PrivateKey.generate().public_key())
    assert exc.value.reason == "bad_signature"


@pytest.mark.parametrize("sample", [0, -0.1, 1.5, "half", True, float("nan"), float("inf")])
def test_a_shadow_spec_with_a_bad_fraction_is_refused(sample):
    doc = {**old_desired(True)}
    doc["shadow"] = {**locations("3.0"), "sample": sample}
    with pytest.raises(ProtocolError) as exc:
        Desired.parse(doc)
    assert exc.value.field == "shadow.sample"


def test_a_shadow_spec_without_its_urls_is_refused_and_a_good_fraction_kept():
    doc = old_desired(True)
    del doc["shadow"]["manifest_url"]
    with pytest.raises(ProtocolError, match="shadow.manifest_url"):
        Desired.parse(doc)
    good = {**old_desired(True), "shadow": {**locations("3.0"), "sample": 0.5}}
    assert Desired.parse(good).shadow.sample == 0.5


def test_unknown_fields_are_ignored_on_parse_and_never_passed_on():
    doc = {**old_desired(False), "future_field": {"x": 1}}
    parsed = Desired.parse(doc)
    assert "future_field" not in parsed.to_dict()
    t = Telemetry.parse(canonical_json(telemetry(extra=[1, 2, 3])))
    assert b"extra" not in t.to_json()


# -- round trips -----------------------------------------------------------------------------------
@pytest.mark.parametrize("message", [
    Desired("dev-01", 1, **locations("1.0")),
    Desired("dev-01", 2**63 - 1, **locations("1.0"), issued_at=1.7e9, shadow=ShadowSpec(**locations("2.0"), sample=0.1)),
    Reported("active", 3, None, "iris", "2.0", "onnx", "fp32", "onnxruntime", "x86_64", ("onnxruntime",),
             {"site": "berlin"}, 1.7e9, ShadowState("iris", "3.0", "failed", "download_http: 404")),
    Reported("idle"),
    Event("install_failed", 1.7e9, "download_hash_mismatch", "artifacts/x: sha256 differs", "iris", "2.0", 5),
    Telemetry.parse(telemetry()),
    Telemetry(1, 0.5, 0, 0),
    ShadowTelemetry("iris", "3.0", "active", 4, 3, 0, 1, LatencyHistogram((0.1,), (3, 0)), 0.75, 0.01, 0.02),
    RunManifest("20260101T000000-abcd", "sklearn", "model.joblib", name="churn", task="classification",
                labels=("no", "yes"), inputs=(RunInput("text", "string", (None, 1)),), calibration="calibration.csv",
                metrics={"test": {"accuracy": 0.9}}),
])
def test_every_message_round_trips_through_its_json(message):
    again = type(message).parse(message.to_json())
    assert again == message
    assert again.to_json() == message.to_json()
    assert json.loads(message.to_json()) == message.to_dict()


def test_status_is_online_or_offline():
    assert Status.parse(b"online").online and not Status.parse(b"offline\n").online
    assert Status.parse(Status(False).to_bytes()) == Status(False)
    with pytest.raises(ProtocolError):
        Status.parse(b"maybe")


def test_telemetry_keeps_its_wire_shape():
    msg = telemetry()
    assert json.loads(Telemetry.parse(msg).to_json()) == msg


# -- malformed messages (issue 13's list and more) --------------------------------------------------
MALFORMED_TELEMETRY = [
    ("model", telemetry(model={})),
    ("version", telemetry(version=["2.0"])),
    ("seq", telemetry(seq=2**70)),
    ("seq", telemetry(seq=-1)),
    ("seq", telemetry(seq=True)),
    ("seq", telemetry(seq=DELETE)),
    ("dropped", telemetry(dropped="abc")),
    ("latency.buckets[0]", telemetry(latency={"buckets": ["0.001", "0.01"], "counts": [1, 1, 1]})),
    ("latency.counts", telemetry(latency={"buckets": [0.001, 0.01], "counts": [1, 1]})),
    ("latency.counts[1]", telemetry(latency={"buckets": [0.001, 0.01], "counts": [1, -1, 0]})),
    ("latency.buckets", telemetry(latency={"buckets": [0.01, 0.001], "counts": [1, 1, 1]})),
    ("latency.buckets", telemetry(latency={"buckets": [0.001] * 5000, "counts": [0] * 5001})),
    ("features.sepal length[0]", telemetry(features={"sepal length": ["a", 2]})),
    ("features.sepal length[1]", telemetry(features={"sepal length": [1, 2.5]})),
    ("features", telemetry(features={f"f{i}": [1] for i in range(2000)})),
    ("features", telemetry(features=[1, 2])),
    ("prediction[0]", telemetry(prediction=[{"n": 1}])),
    ("requests", telemetry(requests=-3)),
    ("requests", telemetry(requests=True)),
    ("requests", telemetry(requests=2**60)),
    ("errors", telemetry(errors=13)),
    ("interval_s", telemetry(interval_s=0)),
    ("interval_s", telemetry(interval_s="10")),
    ("cpu_percent", telemetry(cpu_percent=-1)),
    ("model", telemetry(model="m" * 10_000)),
    ("shadow.agreed", telemetry(shadow={"model": "iris", "version": "3.0", "requests": 1, "agreed": 2})),
    ("shadow.agreement", telemetry(shadow={"model": "iris", "version": "3.0", "agreement": 2.0})),
]


@pytest.mark.parametrize("field,msg", MALFORMED_TELEMETRY, ids=[f"{f}-{i}" for i, (f, _) in enumerate(MALFORMED_TELEMETRY)])
def test_malformed_telemetry_is_refused_naming_the_field(field, msg):
    with pytest.raises(ProtocolError) as exc:
        Telemetry.parse(canonical_json(msg))
    assert exc.value.reason == "bad_schema"
    assert exc.value.field == field
    assert field in str(exc.value)
    assert isinstance(exc.value, EdgeMLError)


@pytest.mark.parametrize("raw,field", [
    (b'{"seq": 1, "interval_s": NaN, "requests": 0, "errors": 0}', "interval_s"),
    (b'{"seq": 1, "interval_s": Infinity, "requests": 0, "errors": 0}', "interval_s"),
    (b'{"seq": 1, "interval_s": 1, "requests": 0, "errors": 0, "cpu_percent": -Infinity}', "cpu_percent"),
    (b'{"seq": 1, "interval_s": 1, "requests": 0, "errors": 0, "latency": {"buckets": [NaN], "counts": [0, 0]}}',
     "latency.buckets[0]"),
])
def test_non_finite_numbers_are_refused(raw, field):
    with pytest.raises(ProtocolError) as exc:
        Telemetry.parse(raw)
    assert exc.value.field == field and "finite" in str(exc.value)


@pytest.mark.parametrize("raw,reason", [
    (b"\xff\xfe not json", "not_json"), (b"[1, 2]", "bad_schema"), (b"[" * 150_000 + b"]" * 150_000, "oversized"),
    (b"[" * 50_000 + b"]" * 50_000, "not_json"),
], ids=["binary", "array", "oversized", "deeply-nested"])
def test_unparseable_payloads_are_refused_with_a_reason(raw, reason):
    # The fleet process runs with Python's default recursion limit; other tests' frameworks (TensorFlow)
    # raise it in this process, which would let the nested case parse into a list.
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)
    try:
        with pytest.raises(ProtocolError) as exc:
            Telemetry.parse(raw)
    finally:
        sys.setrecursionlimit(limit)
    assert exc.value.reason == reason


@pytest.mark.parametrize("doc,field", [
    ({}, "state"),
    ({"state": 3}, "state"),
    ({"state": "active", "seq": 2**63}, "seq"),
    ({"state": "active", "tags": ["a"]}, "tags"),
    ({"state": "active", "tags": {"site": 1}}, "tags.site"),
    ({"state": "active", "tags": {f"k{i}": "v" for i in range(100)}}, "tags"),
    ({"state": "active", "backends": ["onnxruntime"] * 100}, "backends"),
    ({"state": "active", "error": "x" * 100_000}, "error"),
    ({"state": "active", "shadow": {"model": "iris"}}, "shadow.version"),
])
def test_malformed_reported_documents_are_refused(doc, field):
    with pytest.raises(ProtocolError) as exc:
        Reported.parse(canonical_json(doc))
    assert exc.value.field == field


@pytest.mark.parametrize("doc,field", [
    ({"ts": 1.0}, "event"), ({"event": "Install Failed!"}, "event"), ({"event": "installed", "seq": "5"}, "seq"),
    ({"event": "installed", "detail": ["x"]}, "detail"),
])
def test_malformed_events_are_refused(doc, field):
    with pytest.raises(ProtocolError) as exc:
        Event.parse(canonical_json(doc))
    assert exc.value.field == field


# -- the manifest's artifact details ---------------------------------------------------------------
def artifact(**changes) -> dict:
    entry = {"format": "onnx", "precision": "fp32", "backend": "onnxruntime", "path": "artifacts/model.fp32.onnx",
             "size": 10, "files": [{"path": "artifacts/model.fp32.onnx", "sha256": SHA, "size": 10}],
             "validation": {"passed": True, "tolerance": {"atol": 1e-4, "rtol": 1e-3, "min_agreement": 0.99},
                            "max_abs_error": 1e-6, "top1_agreement": 1.0},
             "latency": {"median_ms": 0.1, "runs": 3}, "details": {"io_dtype": "float32"}}
    entry.update(changes)
    return entry


def manifest(**artifact_changes) -> dict:
    return {"format_version": 1, "name": "iris", "version": "1.0", "created_at": "2026-01-01T00:00:00Z",
            "task": "classification", "labels": [0, 1, 2], "source": {"framework": "sklearn"},
            "inputs": [{"name": "input", "dtype": "float32", "shape": [None, 4]}],
            "outputs": [{"name": "label", "dtype": "int64", "shape": [None]}],
            "artifacts": [artifact(**artifact_changes)], "samples": None, "reference": {}, "metrics": {}}


def test_artifact_details_round_trip_through_the_manifest():
    m = Manifest.from_dict(manifest())
    assert isinstance(m.artifacts[0], ArtifactDetails)
    assert m.artifacts[0].to_dict() == artifact()
    assert Manifest.from_json_bytes(m.to_json_bytes()).to_dict() == m.to_dict()


@pytest.mark.parametrize("changes,what", [
    ({"path": "../../etc/passwd"}, "artifacts[0].path"),
    ({"path": "/etc/passwd"}, "artifacts[0].path"),
    ({"files": [{"path": "artifacts/../../x", "sha256": SHA, "size": 1}]}, "artifacts[0].files[0].path"),
    ({"files": [{"path": "artifacts/x", "sha256": "not-a-digest", "size": 1}]}, "artifacts[0].files[0].sha256"),
    ({"files": [{"path": "artifacts/x", "sha256": SHA, "size": -1}]}, "artifacts[0].files[0].size"),
    ({"files": [{"path": "artifacts/x", "sha256": SHA, "size": "1"}]}, "artifacts[0].files[0].size"),
    ({"validation": {"passed": "yes"}}, "artifacts[0].validation.passed"),
    ({"validation": {"tolerance": {"atol": "small"}}}, "artifacts[0].validation.tolerance.atol"),
    ({"latency": {"median_ms": -1}}, "artifacts[0].latency.median_ms"),
    ({"details": {"fixed_batch": 0}}, "artifacts[0].details.fixed_batch"),
    ({"backend": {}}, "artifacts[0].backend"),
])
def test_a_manifest_with_malformed_artifact_details_is_refused(changes, what):
    with pytest.raises(BundleError, match="manifest.json is malformed") as exc:
        Manifest.from_dict(manifest(**changes))
    assert what in str(exc.value)


# -- the train run manifest ------------------------------------------------------------------------
def test_the_run_manifest_name_is_defined_once():
    from edgeml.convert.sources import run_dir
    from edgeml.train import run

    assert run.RUN_MANIFEST is RUN_MANIFEST_NAME and run_dir.RUN_MANIFEST is RUN_MANIFEST_NAME
    assert RunManifest.FILE_NAME == "edgeml-run.json"


def write_run(tmp_path: Path, **changes) -> Path:
    doc = RunManifest("r1", "sklearn", "model.joblib", name="churn").to_dict()
    doc.update(changes)
    (tmp_path / RUN_MANIFEST_NAME).write_text(json.dumps(doc))
    return tmp_path


@pytest.mark.parametrize("changes,field", [
    ({"model_file": "../../model.joblib"}, "model_file"), ({"model_file": None}, "model_file"),
    ({"labels": "abc"}, "labels"), ({"inputs": [{"name": "x", "dtype": "float32", "shape": ["a"]}]}, "inputs[0].shape[0]"),
    ({"format": "edgeml-run/99"}, "format"), ({"calibration": "/etc/passwd"}, "calibration"),
])
def test_a_malformed_run_manifest_is_refused_by_convert(tmp_path, changes, field):
    from edgeml.convert.sources.run_dir import read_run

    run_dir = write_run(tmp_path, **changes)
    with pytest.raises(ProtocolError) as exc:
        RunManifest.read(run_dir)
    assert exc.value.field == field
    with pytest.raises(SourceError, match=field.split("[")[0]):
        read_run(run_dir)


def test_a_run_manifest_reads_back_typed(tmp_path):
    from edgeml.convert.sources.run_dir import read_run, run_defaults

    run = read_run(write_run(tmp_path, extra="ignored"))
    assert (run.framework, run.model_file, run.name) == ("sklearn", "model.joblib", "churn")
    assert run_defaults(str(tmp_path)) == ("churn", "r1")


# -- producers -------------------------------------------------------------------------------------
def test_device_tags_that_do_not_fit_the_reported_contract_are_a_usage_error():
    from edgeml.runtime.fleet_mode import parse_tags

    assert parse_tags("site=berlin,rack=3") == {"site": "berlin", "rack": "3"}
    with pytest.raises(UsageError, match="--tags"):
        parse_tags("site=" + "x" * 1000)


def test_the_device_agent_sends_telemetry_the_fleet_accepts():
    from edgeml.runtime.agent.telemetry import TelemetryRecorder

    recorder = TelemetryRecorder()
    recorder.error(None)
    msg = recorder.collect(None, dropped=3)
    parsed = Telemetry.parse(msg.to_json())
    assert parsed == msg and (parsed.requests, parsed.errors, parsed.dropped) == (1, 1, 3)
    assert sum(parsed.latency.counts) == 0 and len(parsed.latency.counts) == len(parsed.latency.buckets) + 1


# -- the fleet's ingest boundary --------------------------------------------------------------------
@pytest.fixture()
def service(tmp_path):
    from edgeml.fleet.service import FleetConfig, FleetService

    svc = FleetService(FleetConfig(data_dir=tmp_path / "fleet"))
    svc.devices.touch("dev-01")
    yield svc
    svc.stop()


def deliver(service, bus, kind: str, payload: bytes, device: str = "dev-01") -> None:
    bus._on_message(None, None, SimpleNamespace(topic=f"edgeml/devices/{device}/{kind}", payload=payload))


def stored_telemetry(service) -> list[dict]:
    from sqlalchemy import select

    from edgeml.fleet import db

    with service.engine.connect() as conn:
        return [json.loads(r.payload) for r in conn.execute(select(db.telemetry.c.payload))]


def test_bad_messages_are_dropped_and_counted_and_good_ones_stored_without_extras(service):
    from edgeml.fleet.bus import FleetBus

    bus = FleetBus("mqtt://127.0.0.1:1", service.topics, {"telemetry": service.on_telemetry, "reported": service.on_reported,
                                                          "status": service.on_status,
                                                          "events": service.on_event}, service.counters)
    bad = [canonical_json(telemetry(model={})), canonical_json(telemetry(version=[1])), canonical_json(telemetry(seq=2**70)),
           canonical_json(telemetry(dropped="abc")), b"\xffjunk", canonical_json(telemetry(latency={"buckets": ["a"], "counts": [1, 1]}))]
    for payload in bad:
        deliver(service, bus, "telemetry", payload)  # never raises
    deliver(service, bus, "reported", canonical_json({"state": "active", "seq": "x"}))
    deliver(service, bus, "events", canonical_json({"event": "installed", "seq": -1}))
    deliver(service, bus, "status", b"sideways")
    deliver(service, bus, "telemetry", canonical_json(telemetry(extra="not passed on")))
    deliver(service, bus, "reported", canonical_json({"state": "active", "seq": 1, "model": "iris", "version": "2.0",
                                                      "tags": {"site": "b"}, "surprise": 1}))
    deliver(service, bus, "events", canonical_json({"event": "installed", "model": "iris", "version": "2.0", "surprise": 1}))
    deliver(service, bus, "status", b"online")
    snapshot = service.counters.snapshot()
    assert snapshot["dropped"] == {"bad_schema": 8, "not_json": 1}
    assert snapshot["received"] == {"telemetry": 1, "reported": 1, "events": 1, "status": 1}
    deadline = time.time() + 10
    while not stored_telemetry(service) and time.time() < deadline:
        time.sleep(0.1)
    rows = stored_telemetry(service)
    assert rows == [json.loads(Telemetry.parse(canonical_json(telemetry())).to_json())]
    device = service.devices.get("dev-01")
    assert (device["state"], device["version"], device["tags"], device["online"]) == ("active", "2.0", {"site": "b"}, True)
    assert "surprise" not in device["reported"]
    events = service.events("dev-01")
    assert [e["event"] for e in events] == ["installed"] and "surprise" not in events[0]["payload"]
