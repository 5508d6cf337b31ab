"""What must not hurt a fleet: tampered artifacts, forged or replayed desired documents, broken
downloads, kills mid-install, junk on the broker, calls without a token, a broker that goes away."""

from __future__ import annotations

import http.server
import json
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from edgeml.protocol import canonical_json, sign_document
from edgeml.signing import generate_keypair, load_private_key
from fleet_fixtures import TOKEN, infer, served_version, start_device, start_fleet, start_mosquitto, wait_until  # noqa: F401
from test_fleet import X, assign, bundles, device_state, mosquitto, push  # noqa: F401  (fixtures)


def publish(broker_url: str, topic: str, payload: bytes, retain: bool = False) -> None:
    host, port = broker_url.split("//")[1].split(":")
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    c.connect(host, int(port))
    c.loop_start()
    c.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)
    c.disconnect()
    c.loop_stop()


def events_of(fleet, device_id: str, name: str) -> list[dict]:
    return [e["payload"] for e in fleet.get(f"/api/v1/events?device={device_id}") if e["event"] == name]


@pytest.fixture()
def fleet_with_device(tmp_path, keys, bundles, mosquitto):
    fleet = start_fleet(tmp_path, keys, broker_url=mosquitto.url)
    device = start_device(tmp_path, f"d{time.time_ns() % 10**8}", mosquitto.url, keys[1])
    wait_until(lambda: device_state(fleet, device.device_id), 30, "registration")
    push(fleet, bundles[0])
    push(fleet, bundles[1])
    assert assign(fleet, "iris", "1.0", device=device.device_id)[0] == 200
    wait_until(lambda: device_state(fleet, device.device_id)[:2] == ("active", "1.0"), 60, "v1")
    yield fleet, device
    device.proc.kill()
    fleet.proc.terminate()


def desired(fleet, device_id: str, seq: int, version: str, manifest_version: str | None = None, blob_url: str | None = None) -> dict:
    base = f"{fleet.url}/api/v1"
    mv = manifest_version or version
    return {"device_id": device_id, "seq": seq, "model": "iris", "version": version,
            "manifest_url": f"{base}/models/iris/{mv}/manifest.json", "signature_url": f"{base}/models/iris/{mv}/manifest.sig",
            "blob_url": blob_url or f"{base}/blobs/", "issued_at": time.time(), "expires_at": time.time() + 3600}


@pytest.mark.slow
def test_tampered_artifact_is_refused_and_the_old_model_keeps_serving(fleet_with_device, bundles):
    fleet, device = fleet_with_device
    manifest = json.loads((bundles[1] / "manifest.json").read_text())
    digest = manifest["artifacts"][0]["files"][0]["sha256"]
    blob = fleet.data / "blobs" / digest[:2] / digest
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    assert assign(fleet, "iris", "2.0", device=device.device_id)[0] == 200
    failed = wait_until(lambda: events_of(fleet, device.device_id, "install_failed"), 30, "install_failed")
    assert failed[0]["reason"] == "download_hash_mismatch" and failed[0]["version"] == "2.0"
    d = fleet.device(device.device_id)
    assert d["version"] == "1.0" and "hash_mismatch" in d["error"]
    assert served_version(device, "iris") == "1.0" and infer(device.url, "iris", X)["outputs"]


@pytest.mark.slow
def test_forged_replayed_and_mismatched_desired_documents_are_rejected(fleet_with_device, keys, tmp_path):
    fleet, device = fleet_with_device
    topic = f"edgeml/devices/{device.device_id}/desired"
    other_key = load_private_key(generate_keypair(tmp_path / "other")[0])
    publish(fleet.broker_url, topic, sign_document(desired(fleet, device.device_id, 50, "2.0"), other_key), retain=True)
    rejected = wait_until(lambda: events_of(fleet, device.device_id, "desired_rejected"), 30, "forged doc rejected")
    assert rejected[0]["reason"] == "bad_signature"
    # A version whose desired document points at another version's manifest (mix-and-match).
    own = load_private_key(keys[0])
    publish(fleet.broker_url, topic, sign_document(desired(fleet, device.device_id, 60, "2.0", manifest_version="1.0"), own), retain=True)
    failed = wait_until(lambda: events_of(fleet, device.device_id, "install_failed"), 30, "mix-and-match refused")
    assert failed[0]["reason"] == "wrong_bundle"
    # A genuine, older document replayed.
    publish(fleet.broker_url, topic, sign_document(desired(fleet, device.device_id, 1, "2.0"), own), retain=True)
    wait_until(lambda: any(e["reason"] == "replay" for e in events_of(fleet, device.device_id, "desired_rejected")), 30, "replay refused")
    publish(fleet.broker_url, topic, b"{not json", retain=True)
    wait_until(lambda: any(e["reason"] == "not_json" for e in events_of(fleet, device.device_id, "desired_rejected")), 30, "junk refused")
    assert served_version(device, "iris") == "1.0"
    assert fleet.device(device.device_id)["version"] == "1.0"
    # A valid document the fleet did not issue (another writer, or a fleet whose database was reset)
    # installs, and the fleet, seeing a sequence number beyond its own, reissues its desired version.
    publish(fleet.broker_url, topic, sign_document(desired(fleet, device.device_id, 70, "2.0"), own), retain=True)
    wait_until(lambda: any(e.get("seq") == 70 for e in events_of(fleet, device.device_id, "installed")), 30, "the foreign document installs")
    wait_until(lambda: served_version(device, "iris") == "1.0" and fleet.device(device.device_id)["desired_seq"] > 70, 30,
               "the fleet to reconcile the device back to its desired version")


@pytest.mark.slow
def test_a_fleet_with_a_fresh_database_takes_over_devices_that_applied_higher_sequence_numbers(fleet_with_device, tmp_path, keys, bundles):
    old_fleet, device = fleet_with_device
    old_fleet.api("POST", "/api/v1/assign", {"model": "iris", "version": "2.0", "device": device.device_id})
    wait_until(lambda: served_version(device, "iris") == "2.0", 30, "v2 from the old fleet (sequence 2)")
    old_fleet.proc.terminate()
    new = start_fleet(tmp_path, keys, broker_url=old_fleet.broker_url)  # empty database: its sequence starts at 1
    try:
        wait_until(lambda: device_state(new, device.device_id), 30, "the device in the new fleet")
        push(new, bundles[0])
        assert assign(new, "iris", "1.0", device=device.device_id)[0] == 200
        wait_until(lambda: served_version(device, "iris") == "1.0", 60, "the new fleet's assignment to take effect")
        assert new.device(device.device_id)["desired_seq"] > 2
    finally:
        new.proc.terminate()


class _BrokenBlobs(http.server.BaseHTTPRequestHandler):
    """Serves manifests from the fleet but cuts every blob short (the download ends early)."""

    fleet_url = ""

    def do_GET(self) -> None:  # noqa: N802
        import urllib.request

        if "/blobs/" in self.path:
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(b"x" * 100)
            return
        with urllib.request.urlopen(self.fleet_url + self.path) as r:
            body = r.read()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.mark.slow
def test_download_that_ends_early_fails_cleanly(fleet_with_device, keys):
    fleet, device = fleet_with_device
    _BrokenBlobs.fleet_url = fleet.url
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _BrokenBlobs)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/api/v1"
        doc = desired(fleet, device.device_id, 80, "2.0")
        doc.update(manifest_url=f"{base}/models/iris/2.0/manifest.json", signature_url=f"{base}/models/iris/2.0/manifest.sig",
                   blob_url=f"{base}/blobs/")
        publish(fleet.broker_url, f"edgeml/devices/{device.device_id}/desired", sign_document(doc, load_private_key(keys[0])), retain=True)
        failed = wait_until(lambda: events_of(fleet, device.device_id, "install_failed"), 60, "broken download reported")
        assert failed[0]["reason"] in ("download_incomplete", "download_too_large")
        assert served_version(device, "iris") == "1.0"
        assert not list((device.store / "staging").iterdir())  # nothing half-installed
    finally:
        server.shutdown()


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.05, 0.4])
def test_device_killed_mid_install_comes_back_serving_a_valid_model(fleet_with_device, tmp_path, delay):
    fleet, device = fleet_with_device
    assert assign(fleet, "iris", "2.0", device=device.device_id)[0] == 200
    time.sleep(delay)
    device.proc.kill()
    device.restart(tmp_path)
    wait_until(device.ready, 30, "the restarted device to serve")
    assert served_version(device, "iris") in ("1.0", "2.0")
    assert infer(device.url, "iris", X)["outputs"]
    # The retained desired document is still there: the device finishes the job after the restart.
    wait_until(lambda: served_version(device, "iris") == "2.0", 60, "v2 after restart")
    wait_until(lambda: device_state(fleet, device.device_id)[:2] == ("active", "2.0"), 30, "reported v2")


@pytest.mark.slow
def test_junk_on_the_broker_is_counted_and_dropped(fleet_with_device):
    fleet, device = fleet_with_device
    before = fleet.get("/api/v1/stats")["dropped"]
    publish(fleet.broker_url, "edgeml/devices/ghost-9/telemetry", canonical_json({"seq": 1, "interval_s": 1, "requests": 1, "errors": 0}))
    publish(fleet.broker_url, f"edgeml/devices/{device.device_id}/telemetry", b"\xff\xfenot json")
    publish(fleet.broker_url, f"edgeml/devices/{device.device_id}/telemetry", canonical_json({"seq": "x"}))
    publish(fleet.broker_url, f"edgeml/devices/{device.device_id}/telemetry", b"{" + b" " * 300_000 + b"}")
    publish(fleet.broker_url, f"edgeml/devices/{device.device_id}/reported", b"[]")
    publish(fleet.broker_url, "edgeml/devices/bad id!/status", b"online")

    def grew():
        now = fleet.get("/api/v1/stats")["dropped"]
        return all(now.get(k, 0) > before.get(k, 0) for k in ("unknown_device", "not_json", "bad_schema", "oversized"))

    wait_until(grew, 20, "drop counters")
    assert fleet.api("GET", "/api/v1/health")[1]["status"] == "ok"
    assert infer(device.url, "iris", X)["outputs"]


def test_api_calls_without_the_token_get_401_json(tmp_path, keys, mosquitto):
    fleet = start_fleet(tmp_path, keys, broker_url=mosquitto.url)
    try:
        for method, path in (("GET", "/api/v1/devices"), ("GET", "/api/v1/models"), ("POST", "/api/v1/assign")):
            status, body = fleet.api(method, path, {} if method == "POST" else None, token=None)
            assert status == 401 and "token" in body["error"]
        assert fleet.api("GET", "/api/v1/devices", token="wrong")[0] == 401
        status, body = fleet.api("POST", "/api/v1/assign", {"model": "nope", "version": "1", "device": "x"})
        assert status == 404 and "not registered" in body["error"]
        status, body = fleet.api("POST", "/api/v1/models", b"not a tarball")
        assert status == 400 and "tar" in body["error"]
        assert fleet.api("GET", "/openapi.json", token=None)[0] == 200
    finally:
        fleet.proc.terminate()
