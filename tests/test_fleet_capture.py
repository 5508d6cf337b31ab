"""Data capture end to end: real Mosquitto, a real fleet and real `edgeml serve --fleet` devices.

Capture is off by default; `assign --capture 1.0` makes rows (with outputs) arrive; the hourly cap holds;
sensitive columns never leave the device; delete, export and retention work; bad uploads get a 4xx.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from fleet_fixtures import TOKEN, free_port, infer, start_device, start_fleet, start_mosquitto, wait_until

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
SECRET = 9.87654  # the value sent in the sensitive column: it must appear nowhere on the fleet


def make_named_bundle(root: Path, keys) -> Path:
    """Iris fitted on a DataFrame: the bundle's input carries the four feature names."""
    import joblib
    import pandas as pd
    from sklearn.datasets import load_iris
    from sklearn.neural_network import MLPClassifier

    from edgeml.convert.options import ConvertOptions, Precision
    from edgeml.convert.pipeline import convert

    X, y = load_iris(return_X_y=True)
    X = X.astype(np.float32)
    model = MLPClassifier((8,), max_iter=500, random_state=0).fit(pd.DataFrame(X, columns=FEATURES), y)
    joblib.dump(model, root / "iris.joblib")
    np.savez(root / "iris.npz", input=X, label=y)
    options = ConvertOptions(source=str(root / "iris.joblib"), out=root / "iris-1.0", name="iris", version="1.0",
                             precisions=[Precision.FP32], calibration=root / "iris.npz", sign_key=keys[0], latency_runs=3)
    return convert(options).bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, keys) -> Path:
    return make_named_bundle(tmp_path_factory.mktemp("capture-bundle"), keys)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, keys, bundle):
    from edgeml.fleet.registry import pack_bundle

    root = tmp_path_factory.mktemp("capture")
    broker = start_mosquitto(root)
    fleet = start_fleet(root, keys, broker_url=broker.url)
    devices = [start_device(root, f"cap{i}-{time.time_ns() % 10**6}", broker.url, keys[1], interval=0.5) for i in range(2)]
    try:
        assert fleet.api("POST", "/api/v1/models", pack_bundle(bundle))[0] == 201
        for d in devices:
            wait_until(lambda: fleet.device(d.device_id), 30, "registration")
            assert fleet.api("POST", "/api/v1/assign", {"model": "iris", "version": "1.0", "device": d.device_id})[0] == 200
        for d in devices:
            wait_until(lambda: (fleet.device(d.device_id) or {}).get("state") == "active", 60, "v1 active")
        yield fleet, devices
    finally:
        for d in devices:
            d.proc.kill()
        fleet.proc.terminate()
        broker.stop()


def rows_of(fleet, device_id: str) -> list[dict]:
    body = fleet.get("/api/v1/capture/rows?model=iris&limit=1000")
    return [r for r in body["rows"] if r["device_id"] == device_id]


def requests_seen(fleet, device_id: str) -> int:
    """Requests the fleet's telemetry has counted for a device (proof the device observed them)."""
    events = fleet.get(f"/api/v1/devices/{device_id}")
    return int((events.get("telemetry") or {}).get("requests") or 0)


def send(device, n: int) -> None:
    for i in range(n):
        infer(device.url, "iris", [[5.1, 3.5, 1.4, SECRET], [6.7, 3.0, 5.2, 2.3 + i / 100]])


def buffered(device) -> list[Path]:
    """Captured rows waiting on the device: the open batch and sealed ones."""
    return sorted((device.store / "capture").glob("*.jsonl"))


def applied(device) -> dict:
    """The capture policy the device applies (STORE/capture/policy.json), {} when off."""
    path = device.store / "capture" / "policy.json"
    return json.loads(path.read_text()) if path.exists() else {}


def cli(server: str, *args: str):
    from click.testing import CliRunner

    from edgeml.cli import cli as root

    result = CliRunner().invoke(root, [*args, "--server", server, "--token", TOKEN])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def test_capture_is_off_by_default(setup):
    fleet, (dev, _) = setup
    before = requests_seen(fleet, dev.device_id)
    send(dev, 10)
    wait_until(lambda: requests_seen(fleet, dev.device_id) >= before + 10, 30, "telemetry counting the requests")
    assert fleet.get("/api/v1/capture/stats")["stored_rows"] == 0
    assert buffered(dev) == [] and applied(dev) == {}


def test_rate_one_captures_every_request_with_outputs_and_never_the_sensitive_column(setup):
    fleet, (dev, other) = setup
    for d in (dev, other):
        r = cli(fleet.url, "fleet", "assign", d.device_id, "iris", "1.0", "--capture", "1.0",
                "--capture-exclude", "petal_width")
        assert r.exit_code == 0, r.output
    for d in (dev, other):
        wait_until(lambda: applied(d).get("sensitive") == ["petal_width"], 30, "the device to take the policy")
        probe(fleet, d)
    send(dev, 5)
    send(other, 2)
    wait_until(lambda: len(rows_of(fleet, dev.device_id)) >= 6, 30, "six rows")
    rows = rows_of(fleet, dev.device_id)
    assert len(rows) == 6  # the probe request plus five
    for r in rows:
        x = r["inputs"]["input"]
        assert x["features"] == FEATURES[:3] and x["shape"] == [2, 3] and len(x["data"]) == 6
        assert r["outputs"] and all(t["data"] for t in r["outputs"].values())
        assert r["version"] == "1.0" and r["request_id"]
    assert len({r["request_id"] for r in rows}) == 6
    wait_until(lambda: len(rows_of(fleet, other.device_id)) >= 3, 30, "the other device's rows")
    wait_until(lambda: buffered(dev) == [], 30, "the device buffer to empty after uploads")
    # The sensitive value is nowhere in the fleet's database, while the kept columns' values are.
    blob = b"".join(p.read_bytes() for p in fleet.data.glob("fleet.db*"))
    assert str(np.float32(5.1).item()).encode() in blob and str(np.float32(6.7).item()).encode() in blob
    assert str(SECRET).encode() not in blob


def probe(fleet, dev) -> None:
    """One request that the device captures (it is buffered, or already uploaded)."""
    infer(dev.url, "iris", [[5.0, 3.0, 1.5, SECRET], [6.0, 2.9, 4.5, 1.5]])
    wait_until(lambda: buffered(dev) or rows_of(fleet, dev.device_id), 30, "the probe request captured")


def test_delete_removes_only_that_devices_rows(setup):
    fleet, (dev, other) = setup
    wait_until(lambda: rows_of(fleet, other.device_id), 30, "rows of the other device")
    kept = len(rows_of(fleet, other.device_id))
    r = cli(fleet.url, "fleet", "capture", "delete", dev.device_id)
    assert r.exit_code == 0 and "deleted 6" in r.output, r.output
    assert rows_of(fleet, dev.device_id) == [] and len(rows_of(fleet, other.device_id)) == kept


def test_export_writes_parquet(setup, tmp_path):
    import pyarrow.parquet as pq

    fleet, (_, other) = setup
    n = len(rows_of(fleet, other.device_id))
    out = tmp_path / "rows.parquet"
    r = cli(fleet.url, "fleet", "capture", "export", "iris@1.0", "--since", "7d", "--out", str(out))
    assert r.exit_code == 0, r.output
    table = pq.read_table(out).to_pylist()
    assert len(table) == n and {t["device_id"] for t in table} == {other.device_id}
    assert json.loads(table[0]["inputs"])["input"]["features"] == FEATURES[:3]
    assert cli(fleet.url, "fleet", "capture", "export", "iris@2.0", "--out", str(tmp_path / "none.parquet")).exit_code == 0
    assert pq.read_table(tmp_path / "none.parquet").num_rows == 0


def test_max_per_hour_caps_captured_requests(setup):
    fleet, (dev, _) = setup
    r = cli(fleet.url, "fleet", "assign", dev.device_id, "iris", "1.0", "--capture", "1.0,3")
    assert r.exit_code == 0, r.output
    wait_until(lambda: applied(dev).get("max_per_hour") == 3, 30, "the new policy")
    send(dev, 10)
    wait_until(lambda: len(rows_of(fleet, dev.device_id)) >= 3 and buffered(dev) == [], 30, "three rows uploaded")
    send(dev, 5)
    assert buffered(dev) == [] and len(rows_of(fleet, dev.device_id)) == 3
    assert fleet.get("/api/v1/capture/stats")["rows"] >= 3


def test_a_rollout_carries_its_capture_policy_to_every_wave(setup):
    fleet, devices = setup
    r = cli(fleet.url, "fleet", "rollout", "start", "iris", "1.0", "--waves", "100", "--soak", "0s",
            "--capture", "0.5,7", "--capture-exclude", "sepal_width,petal_width")
    assert r.exit_code == 0, r.output
    for d in devices:
        wait_until(lambda: applied(d) == {"rate": 0.5, "max_per_hour": 7, "sensitive": ["sepal_width", "petal_width"]},
                   30, f"{d.device_id} to apply the rollout's policy")
    bad = cli(fleet.url, "fleet", "rollout", "start", "iris", "1.0", "--capture", "1.5")
    assert bad.exit_code != 0 and "RATE must be in (0, 1]" in bad.output


def test_the_buffer_is_bounded_survives_a_restart_and_is_deleted_only_after_a_2xx(setup, bundle, keys, tmp_path,
                                                                                 monkeypatch):
    from edgeml.fleet.capture import CaptureStore
    from edgeml.messages.capture import CapturePolicy
    from edgeml.runtime import load
    from edgeml.runtime.agent import capture as cap
    from edgeml.signing import load_private_key

    fleet, _ = setup
    monkeypatch.setattr(cap, "BATCH_ROWS", 2)
    monkeypatch.setattr(cap, "MAX_BATCHES", 3)
    model = load(bundle)
    device_id = f"restarted-{time.time_ns() % 10**6}"
    token = CaptureStore(None, load_private_key(keys[0]), fleet.url).token(device_id)
    down = f"http://127.0.0.1:{free_port()}/api/v1/capture/{device_id}"  # nothing listens: the fleet is away
    sampler = cap.CaptureSampler(tmp_path / "capture").start()
    sampler.update(CapturePolicy(1.0, down, token))
    x = {"input": np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32)}
    for _ in range(10):
        sampler.offer(model, x, model.predict(x), 0.001)
    sealed = lambda: sorted(p.name for p in (tmp_path / "capture").glob("0*.jsonl"))  # noqa: E731
    wait_until(lambda: len(sealed()) == 3 and sampler.counts["dropped"] == 4, 30, "the oldest batches dropped")
    sampler.stop()
    assert sealed() == ["000000000003.jsonl", "000000000004.jsonl", "000000000005.jsonl"]  # the newest three
    assert sampler.counts["uploaded"] == 0  # every upload failed: the batches stayed
    before = fleet.get("/api/v1/capture/stats").get("dropped_on_devices", 0)
    restarted = cap.CaptureSampler(tmp_path / "capture").start()  # the device restarted; the fleet is back
    try:
        restarted.update(CapturePolicy(1.0, f"{fleet.url}/api/v1/capture/{device_id}", token))
        wait_until(lambda: len(rows_of(fleet, device_id)) == 6 and not sealed(), 30, "the kept batches uploaded")
    finally:
        restarted.stop()
    assert fleet.get("/api/v1/capture/stats")["dropped_on_devices"] == before + 4


def test_bad_uploads_get_a_4xx_and_are_counted(setup, keys):
    from edgeml.fleet.capture import CaptureStore
    from edgeml.signing import load_private_key

    fleet, (dev, _) = setup
    token = CaptureStore(None, load_private_key(keys[0]), fleet.url).token(dev.device_id)

    def post(body: bytes, tok: str | None, device: str = dev.device_id) -> int:
        req = urllib.request.Request(f"{fleet.url}/api/v1/capture/{device}", data=body, method="POST",
                                     headers={"Content-Type": "application/json", **({"Authorization": f"Bearer {tok}"} if tok else {})})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status
        except urllib.error.HTTPError as exc:
            assert "error" in json.loads(exc.read())
            return exc.code

    good = json.dumps({"model": "iris", "version": "1.0", "rows": []}).encode()
    assert post(good, None) == 401 and post(good, TOKEN) == 401 and post(good, token, "someone-else") == 401
    assert post(b"{not json", token) == 400
    assert post(json.dumps({"model": "iris", "version": "1.0", "rows": [{"request_id": "x"}]}).encode(), token) == 400
    assert declared_too_large(fleet.url, f"/api/v1/capture/{dev.device_id}", token) == 413
    assert post(good, token) == 200
    stats = fleet.get("/api/v1/capture/stats")
    assert stats["rejected_unauthorized"] >= 3 and stats["rejected_too_large"] >= 1
    assert sum(v for k, v in stats.items() if k.startswith("rejected_") and k not in
               ("rejected_unauthorized", "rejected_too_large")) >= 2


def declared_too_large(url: str, path: str, token: str) -> int:
    """Announce a 9 MiB body and read the answer before sending it (the fleet refuses without reading)."""
    import http.client

    host, port = url.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.putrequest("POST", path)
    conn.putheader("Authorization", f"Bearer {token}")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(9 << 20))
    conn.endheaders()
    resp = conn.getresponse()
    assert "error" in json.loads(resp.read())
    conn.close()
    return resp.status


def test_retention_purges_old_rows(tmp_path, keys, run_cli):
    from edgeml.fleet import db
    from edgeml.fleet.capture import CaptureStore
    from edgeml.signing import load_private_key

    engine = db.connect(db.default_url(tmp_path))
    store = CaptureStore(engine, load_private_key(keys[0]), "http://fleet", retention_s=1.0)
    row = {"request_id": "r1", "ts": time.time(), "inputs": {"x": {"dtype": "float32", "shape": [1], "data": [1.0]}},
           "outputs": {}}
    assert store.ingest("d1", json.dumps({"model": "m", "version": "1", "rows": [row]}).encode()) == 1
    assert len(store.rows("m")) == 1 and store.purge() == 0  # younger than the retention period
    store.start()
    try:
        wait_until(lambda: store.rows("m") == [], 10, "the retention loop to purge the row")
    finally:
        store.stop()
    assert store.stats()["purged"] == 1
    bad = run_cli("fleet", "serve", "--capture-retention", "soon", "--data", str(tmp_path / "f"))
    assert bad.exit_code != 0 and bad.error_lines and "--capture-retention" in bad.error_lines[0]


@pytest.mark.parametrize("bad", [{"rate": 0}, {"rate": 1.01}, {"rate": True}, {"rate": "0.5"}, {"max_per_hour": 0},
                                 {"url": "ftp://fleet/x"}, {"token": "short"}, {"sensitive": "age"}, {"sensitive": [""]}])
def test_the_capture_policy_is_parsed_strictly(bad):
    from edgeml.messages import Desired
    from edgeml.messages.capture import CapturePolicy
    from edgeml.protocol import ProtocolError

    good = {"rate": 0.25, "url": "http://fleet/api/v1/capture/d1", "token": "t" * 43, "max_per_hour": 10,
            "sensitive": ["age"]}
    doc = {"device_id": "d1", "seq": 1, "model": "m", "version": "1", "manifest_url": "http://f/m",
           "signature_url": "http://f/s", "blob_url": "http://f/b/", "capture": good}
    assert Desired.parse(Desired.parse(doc).to_json()).capture == CapturePolicy.parse(good)
    assert Desired.parse({**doc, "capture": None}).capture is None
    with pytest.raises(ProtocolError):
        Desired.parse({**doc, "capture": {**good, **bad}})


def test_device_detail_shows_the_cache_and_capture_counters_of_telemetry(setup, keys, tmp_path):
    """A real `edgeml serve --fleet --cache 4` device: three identical requests are one miss (the model
    runs, the request is captured) and two hits (not captured); telemetry carries both as counts since the
    previous message, and the fleet's device detail sums them over its window."""
    fleet, devices = setup
    # The earlier rollout (100 % wave) must be over, or it would give this new device its own policy.
    wait_until(lambda: all(r["state"] not in ("running", "paused") for r in fleet.get("/api/v1/rollouts")), 60,
               "the earlier rollout to finish")
    d = start_device(tmp_path, f"cached-{time.time_ns() % 10**6}", fleet.broker_url, keys[1], interval=0.5,
                     extra=["--cache", "4"])
    try:
        wait_until(lambda: fleet.device(d.device_id), 30, "registration")
        r = cli(fleet.url, "fleet", "assign", d.device_id, "iris", "1.0", "--capture", "1.0")
        assert r.exit_code == 0, r.output
        wait_until(lambda: (fleet.device(d.device_id) or {}).get("state") == "active", 60, "active")
        wait_until(lambda: applied(d).get("rate") == 1.0, 60, "the device to take the policy")
        first = infer(d.url, "iris", [[5.1, 3.5, 1.4, 0.2]])["outputs"]
        assert all(infer(d.url, "iris", [[5.1, 3.5, 1.4, 0.2]])["outputs"] == first for _ in range(2))
        detail = lambda: fleet.get(f"/api/v1/devices/{d.device_id}")["telemetry"]  # noqa: E731
        wait_until(lambda: (detail().get("cache") or {}).get("hits") == 2
                   and (detail().get("capture") or {}).get("uploaded") == 1, 30, "the counters in device detail")
        t = detail()
        assert t["cache"] == {"hits": 2, "misses": 1, "hit_rate": 2 / 3, "entries": 1, "capacity": 4}
        assert t["capture"] == {"captured": 1, "uploaded": 1, "dropped": 0}
        assert t["requests"] == 1  # telemetry's requests count model runs; the hits are in cache.hits
        plain = fleet.get(f"/api/v1/devices/{devices[0].device_id}")["telemetry"]
        assert "cache" not in plain  # a device without --cache sends no cache counters
    finally:
        d.proc.kill()


@pytest.mark.parametrize("part", [{"cache": {"hits": 1, "misses": 0, "entries": 5, "capacity": 4}},
                                  {"cache": {"hits": -1, "misses": 0, "entries": 0, "capacity": 4}},
                                  {"cache": {"hits": 1, "misses": 0, "entries": 0, "capacity": 0}},
                                  {"cache": {"hits": 1, "misses": 0, "entries": 0}}, {"cache": []},
                                  {"capture": {"captured": True}}, {"capture": {"dropped": 1.5}}])
def test_the_telemetry_counters_are_parsed_strictly(part):
    from edgeml.messages import Telemetry
    from edgeml.protocol import ProtocolError

    base = {"seq": 1, "interval_s": 1.0, "requests": 3, "errors": 0,
            "cache": {"hits": 2, "misses": 1, "entries": 1, "capacity": 4}, "capture": {"captured": 1}}
    msg = Telemetry.parse(base)
    assert Telemetry.parse(msg.to_json()) == msg and msg.capture.to_dict() == {"captured": 1, "uploaded": 0, "dropped": 0}
    with pytest.raises(ProtocolError):
        Telemetry.parse({**base, **part})
