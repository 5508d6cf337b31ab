"""Attacks on the device agent through the real broker, the real fleet and the real `edgeml serve --fleet`:
path-traversal manifests, dripping downloads, corrupt partials, storage errors during activation,
frozen (expired or undated) and replayed desired documents after the loss of state.json, and a broker
SIGKILL during telemetry (issue 13, findings 5, 6, 7 and 8)."""

from __future__ import annotations

import hashlib
import http.server
import json
import shutil
import threading
import time
import urllib.request
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from edgeml.protocol import sign_document
from edgeml.signing import load_private_key
from fleet_fixtures import free_port, infer, served_version, spawn, start_device, start_fleet, start_mosquitto, wait_until, port_open
from test_fleet import X, assign, bundles, device_state, push  # noqa: F401  (fixtures)
from test_fleet_failures import desired, events_of, publish

VALIDITY = 4.0  # seconds: the freshness test's fleet re-signs desired documents every few seconds


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = start_mosquitto(tmp_path_factory.mktemp("attacks-broker"))
    yield b
    b.stop()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, keys, bundles, broker):
    root = tmp_path_factory.mktemp("attacks-fleet")
    f = start_fleet(root, keys, broker_url=broker.url)
    push(f, bundles[0])
    push(f, bundles[1])
    yield f
    f.proc.terminate()


def new_device(tmp_path, fleet, keys, extra: list[str] | None = None, version: str = "1.0"):
    device = start_device(tmp_path, f"a{time.time_ns() % 10**9}", fleet.broker_url, keys[1], extra=extra)
    wait_until(lambda: device_state(fleet, device.device_id), 30, "registration")
    assert assign(fleet, "iris", version, device=device.device_id)[0] == 200
    wait_until(lambda: device_state(fleet, device.device_id)[:2] == ("active", version), 60, version)
    return device


class Watcher:
    """A plain MQTT client recording every message on some topics (retained ones included)."""

    def __init__(self, broker_url: str, *topics: str) -> None:
        host, port = broker_url.split("//")[1].split(":")
        self.messages: list[tuple[str, bytes]] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, m.payload))
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe([(t, 1) for t in topics])
        self.client.connect(host, int(port))
        self.client.loop_start()

    def payloads(self, suffix: str) -> list[bytes]:
        return [p for t, p in list(self.messages) if t.endswith(suffix) and p]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def reported(watcher: Watcher) -> dict | None:
    docs = watcher.payloads("/reported")
    return json.loads(docs[-1]) if docs else None


# -- a tiny HTTP server serving a malicious or slow bundle ---------------------------------------------
class BundleServer:
    """Serves manifest.json / manifest.sig / blobs from dicts; `drip` seconds between bytes of blobs."""

    def __init__(self, files: dict[str, bytes], blobs: dict[str, bytes], drip: float | None = None) -> None:
        self.files, self.blobs, self.drip, self.requests = files, blobs, drip, []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                outer.requests.append(self.path)
                name = self.path.rsplit("/", 1)[-1]
                body = outer.blobs.get(name) if "/blobs/" in self.path else outer.files.get(name)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    if "/blobs/" in self.path and outer.drip:
                        for i in range(len(body)):
                            self.wfile.write(body[i:i + 1])
                            self.wfile.flush()
                            time.sleep(outer.drip)
                    else:
                        self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}/api/v1"

    def document(self, device_id: str, seq: int, version: str) -> dict:
        now = time.time()
        return {"device_id": device_id, "seq": seq, "model": "iris", "version": version,
                "manifest_url": f"{self.base}/models/iris/{version}/manifest.json",
                "signature_url": f"{self.base}/models/iris/{version}/manifest.sig",
                "blob_url": f"{self.base}/blobs/", "issued_at": now, "expires_at": now + 3600}

    def close(self) -> None:
        self.server.shutdown()


def bundle_files(bundle: Path) -> tuple[dict[str, bytes], dict[str, bytes]]:
    files = {"manifest.json": (bundle / "manifest.json").read_bytes(), "manifest.sig": (bundle / "manifest.sig").read_bytes()}
    blobs = {}
    for p in bundle.rglob("*"):
        if p.is_file():
            data = p.read_bytes()
            blobs[hashlib.sha256(data).hexdigest()] = data
    return files, blobs


# -- finding 7: path traversal -----------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("evil", ["../../escaped.onnx", "/tmp/edgeml-escaped.onnx"])
def test_a_traversal_manifest_is_refused_before_anything_is_written_even_when_insecure(tmp_path, fleet, keys, bundles, evil):
    files, blobs = bundle_files(bundles[1])
    manifest = json.loads(files["manifest.json"])
    entry = manifest["artifacts"][0]["files"][0]
    entry["path"] = evil
    manifest["artifacts"][0]["path"] = evil
    files["manifest.json"] = json.dumps(manifest).encode()
    server = BundleServer(files, blobs)
    port = free_port()
    store = tmp_path / "store-evil"
    device_id = f"evil{port}"
    proc = spawn(["serve", "--fleet", fleet.broker_url, "--device-id", device_id, "--store", str(store), "--port", str(port),
                  "--insecure", "--telemetry-interval", "0.5"], tmp_path / "evil.log", tmp_path)
    try:
        wait_until(lambda: port_open(port) and device_state(fleet, device_id), 30, "the insecure device")
        doc = server.document(device_id, 5, "2.0")
        publish(fleet.broker_url, f"edgeml/devices/{device_id}/desired", sign_document(doc, load_private_key(keys[0])), retain=True)
        failed = wait_until(lambda: events_of(fleet, device_id, "install_failed"), 30, "the traversal refused")
        assert failed[0]["reason"] == "unsafe_path", failed
        assert not [r for r in server.requests if "/blobs/" in r]  # refused at parse: not one byte downloaded
        assert not list(tmp_path.rglob("escaped.onnx")) and not Path("/tmp/edgeml-escaped.onnx").exists()
        assert not list((store / "staging").iterdir()) and not list((store / "models").iterdir())
        assert fleet.device(device_id)["state"] == "idle" and "unsafe_path" in fleet.device(device_id)["error"]
    finally:
        proc.kill()
        server.close()


# -- finding 8: stuck updates ------------------------------------------------------------------------
@pytest.mark.slow
def test_a_dripping_download_fails_and_a_newer_document_preempts_it(tmp_path, fleet, keys, bundles):
    device = new_device(tmp_path, fleet, keys)
    files, blobs = bundle_files(bundles[1])
    server = BundleServer(files, blobs, drip=5.0)  # one byte every 5 s, forever
    try:
        doc = server.document(device.device_id, 10_000, "2.0")
        publish(fleet.broker_url, f"edgeml/devices/{device.device_id}/desired", sign_document(doc, load_private_key(keys[0])), retain=True)
        t0 = time.monotonic()
        failed = wait_until(lambda: events_of(fleet, device.device_id, "install_failed"), 60, "the drip to fail")
        assert failed[0]["reason"] == "download_too_slow" and "retry 1 of" in failed[0]["detail"], failed
        assert time.monotonic() - t0 < 45
        # While failing, the device reports what serves: 1.0, active (never "installing").
        wait_until(lambda: device_state(fleet, device.device_id)[:2] == ("active", "1.0"), 20, "reported 1.0 after the failure")
        assert served_version(device, "iris") == "1.0" and infer(device.url, "iris", X)["outputs"]
        # The retry drips again; a newer legitimate assignment preempts it and installs at once.
        wait_until(lambda: len(events_of(fleet, device.device_id, "install_started")) >= 3, 30, "the retry to start")
        newer = desired(fleet, device.device_id, 10_001, "2.0")  # the fleet's own 2.0, signed with its key
        publish(fleet.broker_url, f"edgeml/devices/{device.device_id}/desired", sign_document(newer, load_private_key(keys[0])), retain=True)
        wait_until(lambda: served_version(device, "iris") == "2.0", 30, "the newer document to win")
        wait_until(lambda: device_state(fleet, device.device_id)[:2] == ("active", "2.0"), 30, "reported 2.0")
        assert events_of(fleet, device.device_id, "install_cancelled")[0]["reason"] == "preempted"
    finally:
        device.proc.kill()
        server.close()


def test_the_download_deadline_bounds_a_slow_but_steady_server(tmp_path, bundles):
    from edgeml.runtime.agent.download import Budget, DownloadError, DownloadLimits, download_blob

    files, blobs = bundle_files(bundles[1])
    digest, data = max(blobs.items(), key=lambda kv: len(kv[1]))
    server = BundleServer(files, blobs, drip=0.05)  # 20 B/s: above a zero minimum rate, never finishes
    try:
        t0 = time.monotonic()
        with pytest.raises(DownloadError) as exc:
            download_blob(f"{server.base}/blobs/", digest, len(data), tmp_path / "x", tmp_path,
                          Budget(DownloadLimits(deadline_s=2.0, min_rate=0.0)))
        assert exc.value.reason == "deadline" and time.monotonic() - t0 < 20
        assert not (tmp_path / "x").exists()
    finally:
        server.close()


@pytest.mark.slow
def test_a_corrupt_partial_download_is_retried_and_installs(tmp_path, fleet, keys, bundles):
    device = new_device(tmp_path, fleet, keys)
    manifest = json.loads((bundles[1] / "manifest.json").read_text())
    entry = manifest["artifacts"][0]["files"][0]
    (device.store / "downloads" / f"{entry['sha256']}.part").write_bytes(b"\0" * entry["size"])  # complete, wrong bytes
    try:
        assert assign(fleet, "iris", "2.0", device=device.device_id)[0] == 200
        wait_until(lambda: served_version(device, "iris") == "2.0", 60, "2.0 after the retry")
        failed = events_of(fleet, device.device_id, "install_failed")
        assert failed and failed[-1]["reason"] == "download_hash_mismatch" and "transient" in failed[-1]["detail"]
        wait_until(lambda: device_state(fleet, device.device_id)[:2] == ("active", "2.0"), 30, "reported 2.0")
        assert fleet.device(device.device_id)["error"] is None
    finally:
        device.proc.kill()


@pytest.mark.slow
def test_a_storage_error_during_activation_keeps_the_old_model_serving_and_says_so(tmp_path, fleet, keys):
    device = new_device(tmp_path, fleet, keys)
    blocker = device.store / ".current.tmp"  # the activation's temporary link name, taken by a directory
    blocker.mkdir()
    (blocker / "x").write_bytes(b"x")
    try:
        assert assign(fleet, "iris", "2.0", device=device.device_id)[0] == 200
        failed = wait_until(lambda: events_of(fleet, device.device_id, "install_failed"), 60, "the activation to fail")
        assert failed[0]["reason"] == "activation_failed" and failed[0]["version"] == "2.0"
        wait_until(lambda: device_state(fleet, device.device_id)[:2] == ("active", "1.0"), 20, "reported 1.0")
        assert "activation_failed" in fleet.device(device.device_id)["error"]
        assert served_version(device, "iris") == "1.0" and infer(device.url, "iris", X)["outputs"]
        assert (device.store / "current").resolve().name == "1.0"
        shutil.rmtree(blocker)  # the storage recovers: the next retry activates 2.0
        wait_until(lambda: served_version(device, "iris") == "2.0", 60, "2.0 after the storage recovered")
        wait_until(lambda: device_state(fleet, device.device_id)[:2] == ("active", "2.0"), 30, "reported 2.0")
    finally:
        device.proc.kill()


# -- finding 6: freshness and rollback protection ----------------------------------------------------
@pytest.mark.slow
def test_undated_and_expired_documents_are_refused(tmp_path, fleet, keys):
    device = new_device(tmp_path, fleet, keys)
    own = load_private_key(keys[0])
    topic = f"edgeml/devices/{device.device_id}/desired"
    try:
        undated = desired(fleet, device.device_id, 500, "2.0")
        del undated["expires_at"]
        undated["issued_at"] = 0  # dated 1970, no expiry
        publish(fleet.broker_url, topic, sign_document(undated, own), retain=True)
        wait_until(lambda: any(e["reason"] == "stale" for e in events_of(fleet, device.device_id, "desired_rejected")), 30, "undated refused")
        expired = {**desired(fleet, device.device_id, 501, "2.0"), "issued_at": time.time() - 100, "expires_at": time.time() - 50}
        publish(fleet.broker_url, topic, sign_document(expired, own), retain=True)
        wait_until(lambda: any(e["reason"] == "expired" for e in events_of(fleet, device.device_id, "desired_rejected")), 30, "expired refused")
        assert served_version(device, "iris") == "1.0"
        assert not [e for e in events_of(fleet, device.device_id, "install_started") if e.get("seq") in (500, 501)]
    finally:
        device.proc.kill()


@pytest.mark.slow
def test_documents_are_re_signed_without_reinstalls_and_a_device_whose_document_expires_reports_stale(tmp_path, keys, bundles):
    broker = start_mosquitto(tmp_path)
    fleet = start_fleet(tmp_path, keys, broker_url=broker.url, extra=["--desired-validity", str(VALIDITY)])
    device = None
    watcher = Watcher(broker.url, "edgeml/devices/+/reported", "edgeml/devices/+/desired")
    try:
        push(fleet, bundles[0])
        device = new_device(tmp_path, fleet, keys)

        def resigned():
            docs = [json.loads(p)["doc"] for p in watcher.payloads("/desired")]
            return len({d["expires_at"] for d in docs}) >= 3 and len({d["seq"] for d in docs}) == 1 and docs

        docs = wait_until(resigned, 6 * VALIDITY, "the fleet to re-sign the document twice")
        assert {d["version"] for d in docs} == {"1.0"}
        wait_until(lambda: len(watcher.payloads("/desired")) >= len(docs) + 1, 3 * VALIDITY, "one more re-signing")
        seq = docs[0]["seq"]
        assert len([e for e in events_of(fleet, device.device_id, "install_started") if e.get("seq") == seq]) == 1
        assert not events_of(fleet, device.device_id, "desired_rejected")
        d = fleet.device(device.device_id)
        assert (d["state"], d["version"], d["error"]) == ("active", "1.0", None)

        fleet.proc.terminate()  # nobody re-signs now
        stale = wait_until(lambda: (lambda r: r if r and (r.get("error") or "").startswith("stale") else None)(reported(watcher)),
                           30, "the device to report itself stale")
        assert (stale["state"], stale["version"]) == ("active", "1.0")
        assert served_version(device, "iris") == "1.0" and infer(device.url, "iris", X)["outputs"]
        fleet = start_fleet(tmp_path, keys, broker_url=broker.url, data=fleet.data, extra=["--desired-validity", str(VALIDITY)])
        wait_until(lambda: (lambda r: r and r.get("error") is None)(reported(watcher)), 30, "fresh again once the fleet re-signs")
        assert served_version(device, "iris") == "1.0"
    finally:
        watcher.close()
        if device:
            device.proc.kill()
        fleet.proc.terminate()
        broker.stop()


@pytest.mark.slow
def test_the_sequence_floor_survives_the_loss_of_state_json(tmp_path, fleet, keys):
    device = new_device(tmp_path, fleet, keys)
    assert assign(fleet, "iris", "2.0", device=device.device_id)[0] == 200
    wait_until(lambda: device_state(fleet, device.device_id)[:2] == ("active", "2.0"), 60, "2.0")
    applied = fleet.device(device.device_id)["desired_seq"]
    device.proc.kill()
    (device.store / "state.json").unlink()
    (device.store / "seq.json").write_text("{corrupt")
    device.restart(tmp_path)
    wait_until(device.ready, 30, "the restarted device")
    # A genuine, fresh, older signed document (the fleet's key) replayed: refused, 2.0 keeps serving.
    old = desired(fleet, device.device_id, applied - 1, "1.0")
    publish(fleet.broker_url, f"edgeml/devices/{device.device_id}/desired", sign_document(old, load_private_key(keys[0])), retain=True)
    try:
        wait_until(lambda: any(e["reason"] == "replay" and e.get("seq") == applied - 1
                               for e in events_of(fleet, device.device_id, "desired_rejected")), 30, "the replay refused")
        assert served_version(device, "iris") == "2.0"
        assert json.loads((device.store / "seq.json").read_text())["last_seq"] >= applied
    finally:
        device.proc.kill()


# -- finding 5: telemetry end to end -----------------------------------------------------------------
def stored_telemetry(fleet, device_id: str) -> list[int]:
    import sqlite3

    with sqlite3.connect(fleet.data / "fleet.db", timeout=30) as conn:
        return [r[0] for r in conn.execute("select seq from telemetry where device_id = ?", (device_id,))]


@pytest.mark.slow
def test_telemetry_survives_a_broker_sigkill_without_persistence(tmp_path, keys):
    broker = start_mosquitto(tmp_path)  # persistence false: the restarted broker remembers nothing
    fleet = start_fleet(tmp_path, keys, broker_url=broker.url)
    device = start_device(tmp_path, "survivor", broker.url, keys[1], interval=0.2)
    try:
        wait_until(lambda: len(stored_telemetry(fleet, "survivor")) >= 5, 30, "telemetry flowing")
        broker.proc.kill()  # SIGKILL
        broker.proc.wait(10)
        outbox = device.store / "outbox"
        wait_until(lambda: len([p for p in outbox.iterdir() if p.suffix == ".telemetry"]) >= 20, 30, "spooled telemetry")
        time.sleep(3)
        broker.start()  # same port, empty
        # Every sequence number the device produced until a while after the restart arrives, exactly once.
        wait_until(lambda: len(stored_telemetry(fleet, "survivor")) >= 5 + 40, 60, "telemetry after the restart")
        produced = json.loads((outbox / ".state.json").read_text())["seq"]

        def complete():
            seqs = stored_telemetry(fleet, "survivor")
            return set(range(1, produced + 1)) <= set(seqs) and seqs

        try:
            seqs = wait_until(complete, 150, "every telemetry message stored")
        except AssertionError:
            seqs = stored_telemetry(fleet, "survivor")
            missing = sorted(set(range(1, produced + 1)) - set(seqs))
            raise AssertionError(f"{len(missing)} of {produced} lost: {missing[:30]}; stats {fleet.get('/api/v1/stats')}") from None
        assert len(seqs) == len(set(seqs)), f"{len(seqs) - len(set(seqs))} duplicates stored"
        assert min(seqs) == 1
    finally:
        device.proc.kill()
        fleet.proc.terminate()
        broker.stop()


def test_the_outbox_keeps_telemetry_until_acknowledged_and_bounds_it(tmp_path):
    from edgeml.runtime.agent.outbox import Outbox

    box = Outbox(tmp_path, max_messages=5)
    for seq in range(1, 8):
        box.put("telemetry", json.dumps({"seq": seq}).encode(), seq=seq)
    assert box.pending() == 5 and box.dropped == 2  # the two oldest dropped, counted
    sent: list[int] = []
    box.drain(lambda kind, payload: sent.append(json.loads(payload)["seq"]) or True)
    assert sent == [3, 4, 5, 6, 7] and box.pending() == 5  # sent, kept until acknowledged
    assert box.drain(lambda kind, payload: sent.append(0) or True) == 0  # not due again yet
    assert box.ack(5) == 3 and box.pending() == 2
    box.resend_all()  # a reconnect: the unacknowledged go again, the oldest alone until the fleet acknowledges it
    probe: list[int] = []
    assert box.drain(lambda kind, payload: probe.append(json.loads(payload)["seq"]) or True) == 1 and probe == [6]
    assert box.probing and box.drain(lambda kind, payload: True) == 0
    box.ack(6)
    assert not box.probing and box.drain(lambda kind, payload: probe.append(json.loads(payload)["seq"]) or True) == 1
    assert probe == [6, 7]
    again = Outbox(tmp_path, max_messages=5)  # a restart: sequence and drops survive
    assert again.last_seq == 7 and again.dropped == 2 and again.pending() == 1
    again.ack(100)  # the fleet has more than this store remembers (a reset store): continue above it
    assert again.last_seq == 100 and again.pending() == 0


def test_freshness_rules_of_a_desired_document():
    from edgeml.messages import Desired
    from edgeml.protocol import ProtocolError

    loc = {"model": "iris", "version": "1", "manifest_url": "http://f/m", "signature_url": "http://f/s", "blob_url": "http://f/b/"}
    now = 1.8e9
    doc = lambda issued, expires: Desired("d1", 3, **loc, issued_at=issued, expires_at=expires)  # noqa: E731
    assert doc(now - 10, now + 10).freshness(now) is None
    assert doc(None, None).freshness(now) == "stale" and doc(0, None).freshness(now) == "stale"
    assert doc(now - 20, now - 10).freshness(now) == "expired"
    assert doc(now + 3600, now + 7200).freshness(now) == "stale"  # issued in the future beyond the clock skew
    assert doc(now - 10, now + 400 * 86400).freshness(now) == "stale"  # an almost eternal document
    with pytest.raises(ProtocolError, match="expires_at"):
        Desired.parse({"device_id": "d1", "seq": 1, **loc, "issued_at": now, "expires_at": now - 1})
