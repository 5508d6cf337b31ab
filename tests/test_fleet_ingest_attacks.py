"""Attacks on the fleet's ingest, read paths and registry (issue 13, findings 1, 2, 3 (seq), 5 (fleet side), 7
(registry side)), against the real Mosquitto broker and a real `edgeml fleet serve`, plus the ingest writer
on a real SQLite database (a trigger makes one row fail) and an unreachable real PostgreSQL URL.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from edgeml.messages import ProtocolError, Telemetry
from fleet_fixtures import start_fleet, start_mosquitto, wait_until
from test_fleet import bundles, push  # noqa: F401  (fixture)

LATENCY = {"buckets": [0.001, 0.01, 0.1], "counts": [5, 3, 1, 0]}


def valid(seq: int, model: str = "iris", version: str = "1.0", requests: int = 9) -> dict[str, Any]:
    return {"seq": seq, "ts": time.time(), "interval_s": 1.0, "model": model, "version": version,
            "requests": requests, "errors": 0, "latency": dict(LATENCY), "features": {"x": [1, 2, 3]},
            "prediction": [4, 5], "cpu_percent": 3.5, "rss_bytes": 1000, "dropped": 0}


def mutated(seq: int, **changes: Any) -> bytes:
    return json.dumps({**valid(seq), **changes}).encode()


# The messages of findings 1 and 2: each must be dropped at ingest, never stored.
HOSTILE = [
    mutated(1, model={}), mutated(2, version=["1.0"]), mutated(2**70), mutated(-1), mutated(4, dropped="abc"),
    mutated(5, latency={"buckets": ["0.1", "1"], "counts": [1, 2, 3]}),
    mutated(6, latency={"buckets": [0.1], "counts": ["1", 2]}), mutated(7, features={"x": ["a", None]}),
    mutated(8, prediction=[1.5, 2]), mutated(9, requests=2**70), mutated(10, cpu_percent="NaN"),
    mutated(11, rss_bytes=-5), mutated(12, errors=-1), mutated(13, interval_s="NaN"),
    b'{"seq": 14, "interval_s": NaN, "requests": 1, "errors": 0}', mutated(15, requests=True),
    mutated(16, prediction=[-3, 1]), mutated(17, shadow={"model": "m", "version": "v", "requests": "x"}),
    b"[1, 2, 3]", b"\xff\xfe", b"{" * 5000 + b"}" * 5000, mutated(18, latency="fast"),
]


class Client:
    """One paho client on the broker: publishes fast (QoS 1, many in flight) and records what it receives."""

    def __init__(self, broker_url: str, name: str) -> None:
        host, port = broker_url.split("//")[1].split(":")
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{name}-{time.time_ns()}",
                             protocol=mqtt.MQTTv311)
        self.c.max_inflight_messages_set(1000)
        self.c.max_queued_messages_set(0)
        self.received: list[mqtt.MQTTMessage] = []
        self.c.on_message = lambda _c, _u, m: self.received.append(m)
        self.c.connect(host, int(port))
        self.c.loop_start()

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> mqtt.MQTTMessageInfo:
        return self.c.publish(topic, payload, qos=1, retain=retain)

    def publish_all(self, messages: list[tuple[str, bytes]]) -> None:
        infos = [self.publish(t, p) for t, p in messages]
        for info in infos:
            info.wait_for_publish(60)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = start_mosquitto(tmp_path_factory.mktemp("mosquitto"), extra="max_inflight_messages 1000\nmax_queued_messages 100000\n")
    yield b
    b.stop()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, keys, broker):
    f = start_fleet(tmp_path_factory.mktemp("attacked-fleet"), keys, broker_url=broker.url)
    yield f
    f.proc.terminate()


@pytest.fixture(scope="module")
def client(broker):
    c = Client(broker.url, "attacker")
    yield c
    c.close()


def register(fleet, client: Client, device_id: str) -> None:
    client.publish(f"edgeml/devices/{device_id}/status", b"online").wait_for_publish(10)
    wait_until(lambda: fleet.device(device_id), 30, f"{device_id} to register")


def stored(fleet, device_id: str) -> list[tuple[int, str]]:
    with sqlite3.connect(fleet.data / "fleet.db", timeout=30) as conn:
        return conn.execute("SELECT seq, payload FROM telemetry WHERE device_id = ? ORDER BY seq", (device_id,)).fetchall()


def drops_of(fleet, device_id: str) -> dict[str, int]:
    return fleet.get("/api/v1/stats")["dropped_by_device"].get(device_id, {})


def read_paths_answer(fleet, device_id: str) -> None:
    for path in ("/api/v1/devices", "/api/v1/versions", f"/api/v1/devices/{device_id}", "/api/v1/events",
                 "/api/v1/models", "/api/v1/stats", "/api/v1/rollouts"):
        status, body = fleet.api("GET", path)
        assert status == 200, (path, status, body)


# -- finding 1: one hostile message cannot stop storage ------------------------------------------------------
def test_hostile_telemetry_is_dropped_and_counted_by_reason_and_device_while_valid_telemetry_is_stored(fleet, client):
    assert all(_is_bad(p) for p in HOSTILE)
    dev = f"f1-{time.time_ns() % 10**8}"
    register(fleet, client, dev)
    topic = f"edgeml/devices/{dev}/telemetry"
    messages = []
    for i in range(1, 61):  # every valid message between hostile ones
        messages.append((topic, json.dumps(valid(100 + i)).encode()))
        messages.append((topic, HOSTILE[i % len(HOSTILE)]))
    client.publish_all(messages)
    wait_until(lambda: len(stored(fleet, dev)) == 60, 30, "every valid message stored")
    drops = wait_until(lambda: (lambda d: d if sum(d.values()) == 60 else None)(drops_of(fleet, dev)), 30,
                       "every hostile message counted for the device")
    assert set(drops) <= {"bad_schema", "not_json"} and drops["bad_schema"] > drops.get("not_json", 0)
    assert [seq for seq, _ in stored(fleet, dev)] == list(range(101, 161))
    log = fleet.proc.text()
    assert "dropped a message from" in log and log.count("dropped a message from") < 10  # logged, rate-limited
    read_paths_answer(fleet, dev)


# -- finding 2: odd values never reach storage, and every read path survives odd stored rows -------------------
def test_read_paths_and_the_rollout_engine_survive_garbage_rows_already_in_the_database(fleet, client, bundles):
    dev = f"f2-{time.time_ns() % 10**8}"
    register(fleet, client, dev)
    push(fleet, bundles[0])
    client.publish(f"edgeml/devices/{dev}/reported", json.dumps({"state": "active", "model": "iris", "version": "1.0"}).encode(),
                   retain=True).wait_for_publish(10)
    wait_until(lambda: (fleet.device(dev) or {}).get("version") == "1.0", 30, "reported state")
    mine = f"v-{dev}"  # this test's rows only, in /versions
    client.publish(f"edgeml/devices/{dev}/telemetry", json.dumps(valid(1, version=mine)).encode()).wait_for_publish(10)
    wait_until(lambda: stored(fleet, dev), 30, "one valid row")
    now = time.time()
    bad_payloads = ["{not json", "[]", json.dumps({**valid(2), "dropped": "abc"}),
                    json.dumps({**valid(3), "latency": {"buckets": ["a"], "counts": [1, 2]}}),
                    json.dumps({**valid(4), "features": {"x": ["NaN"]}}), json.dumps({**valid(5), "requests": -4}),
                    json.dumps({**valid(6), "prediction": "many"}), "null"]
    with sqlite3.connect(fleet.data / "fleet.db", timeout=30) as conn:  # rows an older version (or a hand) wrote
        for i, payload in enumerate(bad_payloads):
            conn.execute("INSERT INTO telemetry (device_id, model, version, received_at, seq, payload) VALUES (?,?,?,?,?,?)",
                         (dev, "iris", mine, now, 1000 + i, payload))
        conn.execute("INSERT INTO telemetry (device_id, model, version, received_at, seq, payload) VALUES (?,?,?,?,?,?)",
                     (dev, 7, "1.0", "yesterday", 2000, json.dumps(valid(7))))
        conn.execute("INSERT INTO events (device_id, received_at, event, payload) VALUES (?,?,?,?)",
                     (dev, now, "install_failed", "{broken"))
        conn.execute("INSERT INTO events (device_id, received_at, event, payload) VALUES (?,?,?,?)",
                     (dev, now, "install_failed", "[1, 2]"))
        ghost = f"ghost-{dev}"
        conn.execute("INSERT INTO devices (id, tags, online, first_seen, last_seen, reported, desired_seq, backends) "
                     "VALUES (?,?,?,?,?,?,?,?)", (ghost, "[1]", 1, now, now, "{oops", "many", '"x"'))
    read_paths_answer(fleet, dev)
    read_paths_answer(fleet, ghost)
    detail = fleet.get(f"/api/v1/devices/{dev}")
    assert detail["telemetry"]["messages"] == 1 and detail["telemetry"]["requests"] == 9  # only the valid row counts
    versions = fleet.get("/api/v1/versions")
    assert [v["messages"] for v in versions if v["version"] == mine] == [1]
    assert fleet.get("/api/v1/stats")["read_skipped"]["telemetry"] >= len(bad_payloads)
    # assigning still works for both devices (the hand-written desired_seq counts as none issued)
    status, body = fleet.api("POST", "/api/v1/assign", {"model": "iris", "version": "1.0", "device": ghost})
    assert status == 200 and body["assigned"][0]["seq"] == 1, body
    # a rollout over these rows ticks: it opens its first wave (an assign) and keeps running
    status, r = fleet.api("POST", "/api/v1/rollouts", {"model": "iris", "version": "1.0", "selector": {}, "soak_s": 1,
                                                       "waves": [100]})
    assert status == 201, r
    wait_until(lambda: fleet.get(f"/api/v1/rollouts/{r['id']}")["gates"], 30, "the engine to evaluate gates")
    assert "rollout tick failed" not in fleet.proc.text() and "step failed" not in fleet.proc.text()
    fleet.api("POST", f"/api/v1/rollouts/{r['id']}/abort")


# -- finding 3 (fleet side): a forged reported seq cannot break later assigns ----------------------------------
def test_a_forged_reported_seq_is_refused_and_assigns_keep_working(fleet, client, bundles):
    dev = f"f3-{time.time_ns() % 10**8}"
    register(fleet, client, dev)
    push(fleet, bundles[0])
    forged = {"state": "active", "model": "iris", "version": "1.0", "seq": 2**63 - 1}
    client.publish(f"edgeml/devices/{dev}/reported", json.dumps(forged).encode(), retain=True).wait_for_publish(10)
    refused = wait_until(lambda: [e for e in fleet.get(f"/api/v1/events?device={dev}") if e["event"] == "seq_refused"],
                         30, "the refused seq recorded as an event")
    assert refused[0]["payload"]["seq"] == 2**63 - 1 and refused[0]["payload"]["reason"] == "not_issued"
    assert drops_of(fleet, dev).get("seq_not_issued") == 1
    for expected in (1, 2):
        status, body = fleet.api("POST", "/api/v1/assign", {"model": "iris", "version": "1.0", "device": dev})
        assert status == 200 and body["assigned"] == [{"device": dev, "seq": expected}], body
    client.publish(f"edgeml/devices/{dev}/reported", b"", retain=True).wait_for_publish(10)


# -- finding 5 (fleet side): each (device, seq) stored once, and acknowledged ------------------------------------
def test_redelivered_telemetry_is_stored_once_and_the_highest_stored_seq_is_acked_retained(fleet, client, broker):
    dev = f"f5-{time.time_ns() % 10**8}"
    register(fleet, client, dev)
    topic = f"edgeml/devices/{dev}/telemetry"
    client.publish_all([(topic, json.dumps(valid(seq)).encode()) for seq in (1, 2, 3, 2, 3, 3, 1)])
    wait_until(lambda: fleet.get("/api/v1/stats")["telemetry_duplicates"] >= 4, 30, "the duplicates to be ignored")
    assert [seq for seq, _ in stored(fleet, dev)] == [1, 2, 3]
    listener = Client(broker.url, "device-ack")  # subscribes after the fact: the ack is retained
    try:
        listener.c.subscribe(f"edgeml/devices/{dev}/telemetry_ack", qos=1)
        msg = wait_until(lambda: listener.received and listener.received[-1], 30, "the retained ack")
        assert msg.retain and msg.qos == 1 and json.loads(msg.payload) == {"seq": 3}
        client.publish_all([(topic, json.dumps(valid(seq)).encode()) for seq in range(4, 40)])
        wait_until(lambda: json.loads(listener.received[-1].payload) == {"seq": 39}, 30, "the ack to move on")
        assert len(listener.received) <= 10  # batched: about one ack a second, not one per message
    finally:
        listener.close()


def test_ingest_workers_store_once_count_by_device_and_ack_on_their_own_clients(tmp_path, keys, broker):
    workers = start_fleet(tmp_path, keys, broker_url=broker.url, extra=["--ingest-workers", "2"])
    pub, listener = Client(broker.url, "w-device"), Client(broker.url, "w-ack")
    try:
        wait_until(lambda: workers.get("/api/v1/stats")["ingest_workers_ready"] == 2, 60, "both workers subscribed")
        dev = f"fw-{time.time_ns() % 10**8}"
        register(workers, pub, dev)
        topic = f"edgeml/devices/{dev}/telemetry"
        pub.publish_all([(topic, json.dumps(valid(seq)).encode()) for seq in list(range(1, 31)) + [5, 6, 7]]
                        + [(topic, p) for p in HOSTILE])
        wait_until(lambda: len(stored(workers, dev)) == 30, 30, "30 distinct rows")
        listener.c.subscribe(f"edgeml/devices/{dev}/telemetry_ack", qos=1)
        wait_until(lambda: listener.received and json.loads(listener.received[-1].payload) == {"seq": 30}, 30, "the ack")
        wait_until(lambda: sum(drops_of(workers, dev).values()) == len(HOSTILE), 30, "the workers' drops, per device")
        assert [seq for seq, _ in stored(workers, dev)] == list(range(1, 31))
    finally:
        pub.close()
        listener.close()
        workers.proc.terminate()


# -- finding 7 (registry side): a manifest cannot make the registry read host files ------------------------------
def _traversal_bundle(src: Path, dest: Path, keys, target: str, host_file: Path | None) -> Path:
    from edgeml.signing import load_private_key, sign

    bundle = Path(shutil.copytree(src, dest))
    manifest = json.loads((bundle / "manifest.json").read_text())
    import hashlib

    data = host_file.read_bytes() if host_file else b"absent"
    manifest["artifacts"][0]["files"].append({"path": target, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)})
    raw = json.dumps(manifest, indent=2).encode()
    (bundle / "manifest.json").write_bytes(raw)
    (bundle / "manifest.sig").write_bytes(sign(load_private_key(keys[0]), raw))
    return bundle


def test_a_signed_manifest_pointing_outside_the_bundle_is_refused_the_same_whether_the_file_exists(fleet, bundles, keys,
                                                                                                  tmp_path, run_cli):
    from edgeml.fleet.registry import pack_bundle

    host = Path("/etc/debian_version") if Path("/etc/debian_version").is_file() else Path("/etc/hostname")
    answers = []
    for name, target, exists in (("a", f"../../..{host}", host), ("b", "../../../etc/no-such-file-here", None),
                                 ("c", str(host), host), ("d", "artifacts/..\\..\\x", None)):
        bundle = _traversal_bundle(bundles[0], tmp_path / name, keys, target, exists)
        status, body = fleet.api("POST", "/api/v1/models", pack_bundle(bundle))
        assert status == 400 and set(body) == {"error"} and "outside the bundle" in body["error"], body
        answers.append(body["error"].replace(target[:64], "<path>"))
        result = run_cli("inspect", bundle)  # edgeml inspect parses the manifest the same way
        assert result.exit_code != 0 and result.error_lines and "outside the bundle" in result.output
    assert answers[0] == answers[1]  # nothing tells whether a host file exists
    import hashlib

    digest = hashlib.sha256(host.read_bytes()).hexdigest()
    assert fleet.api("GET", f"/api/v1/blobs/{digest}", token=None)[0] == 404
    assert fleet.api("GET", "/api/v1/blobs/..%2F..%2Fetc%2Fpasswd", token=None)[0] == 404


def test_the_registry_refuses_bundle_files_that_are_symlinks(bundles, tmp_path, keys):
    from edgeml.errors import IntegrityError
    from edgeml.fleet import db
    from edgeml.fleet.registry import Registry
    from edgeml.fleet.store import BlobStore
    from edgeml.signing import load_public_key

    bundle = Path(shutil.copytree(bundles[0], tmp_path / "linked"))
    entry = json.loads((bundle / "manifest.json").read_text())["artifacts"][0]["files"][0]
    outside = tmp_path / "outside.bin"
    shutil.copy(bundle / entry["path"], outside)  # same bytes, same hash: only the link is wrong
    (bundle / entry["path"]).unlink()
    (bundle / entry["path"]).symlink_to(outside)
    registry = Registry(db.connect(f"sqlite:///{tmp_path / 'r.db'}"), BlobStore(tmp_path / "store"), load_public_key(keys[1]))
    with pytest.raises(IntegrityError, match="symbolic link"):
        registry.push_dir(bundle)
    assert not [p for p in (tmp_path / "store" / "blobs").rglob("*") if p.is_file()]  # nothing was read into the store


# -- fuzz: >= 10,000 hostile and valid payloads through the broker into the fleet ---------------------------------
FUZZ_BATCHES, FUZZ_BATCH = 85, 20  # 1,700 hostile cases from hypothesis; each mutation hits 8 base messages


def _bases(seq: int) -> list[dict[str, Any]]:
    """The valid messages a mutation is applied to: full, minimal, with a shadow block, idle, without model,
    all errors, large counts, and with many features."""
    full = valid(seq)
    shadow = {**valid(seq), "shadow": {"model": "iris", "version": "2.0", "requests": 4, "agreed": 3, "errors": 0,
                                       "latency": dict(LATENCY)}}
    idle = {**valid(seq, requests=0), "latency": {"buckets": [0.1], "counts": [0, 0]}, "features": {}, "prediction": []}
    minimal = {"seq": seq, "interval_s": 1.0, "requests": 1, "errors": 0}
    anonymous = {k: v for k, v in valid(seq).items() if k not in ("model", "version")}
    failing = {**valid(seq), "errors": 9}
    large = {**valid(seq, requests=2**52), "dropped": 2**52, "rss_bytes": 2**52, "cpu_percent": 400.0}
    wide = {**valid(seq), "features": {f"f{i}": [i, i + 1] for i in range(50)}}
    return [full, minimal, shadow, idle, anonymous, failing, large, wide]


def _hostile_strategy():
    from hypothesis import strategies as st

    junk = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**80, max_value=2**80),
                     st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
                     st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
                     st.sampled_from(["NaN", "Infinity", "-1", "abc", "", "1e400"]))
    fields = st.sampled_from(["seq", "interval_s", "requests", "errors", "model", "version", "latency", "cpu_percent",
                              "rss_bytes", "features", "prediction", "dropped", "shadow", "ts"])
    nested = st.one_of(
        st.fixed_dictionaries({"buckets": st.lists(junk, max_size=4), "counts": st.lists(junk, max_size=5)}).map(
            lambda v: ("latency", v)),
        st.dictionaries(st.text(max_size=4), st.lists(junk, max_size=4), min_size=1, max_size=3).map(lambda v: ("features", v)),
        st.lists(junk, min_size=1, max_size=5).map(lambda v: ("prediction", v)))
    mutation = st.one_of(st.tuples(fields, junk), nested)
    raw = st.one_of(st.binary(max_size=64), st.just(b"[]"), st.just(b"{" * 3000), st.just(b'{"seq": NaN}'))
    mutated = st.lists(mutation, min_size=1, max_size=3).map(lambda ms: ("mutated", ms))
    tagged_raw = raw.map(lambda b: ("raw", b))
    return st.sampled_from("mmmmr").flatmap(lambda k: mutated if k == "m" else tagged_raw)  # 4 in 5 are mutations


def _encode(kind: str, body: Any, seq: int) -> list[bytes]:
    """The payloads of one hostile case: a raw one as is, a mutation applied to each base message."""
    if kind == "raw":
        return [body]
    out = []
    for msg in _bases(seq):
        for field, value in body:
            msg[field] = value
        try:
            out.append(json.dumps(msg).encode())
        except (ValueError, OverflowError):
            out.append(b"{bad")
    return out


def _is_bad(payload: bytes) -> bool:
    try:
        Telemetry.parse(payload)
        return False
    except ProtocolError:
        return True


def test_fuzzed_telemetry_leaves_storage_gates_and_the_api_working(fleet, client):
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st

    dev = f"fz-{time.time_ns() % 10**8}"
    register(fleet, client, dev)
    corpus: list[tuple[str, Any]] = []

    @settings(max_examples=FUZZ_BATCHES, deadline=None, database=None, phases=[Phase.generate], derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(_hostile_strategy(), min_size=FUZZ_BATCH, max_size=FUZZ_BATCH))
    def generate(batch):
        corpus.extend(batch)

    generate()
    topic = f"edgeml/devices/{dev}/telemetry"
    messages, bad, good, seq = [], 0, 0, 0
    for i, (kind, body) in enumerate(corpus):
        for payload in _encode(kind, body, seq + 1):
            seq += 1
            if _is_bad(payload):
                bad += 1
            else:  # a mutation that happened to stay valid (an optional field set to null, ...): stored like any
                good += 1
                payload = json.dumps({**json.loads(payload), "seq": seq}).encode()
            messages.append((topic, payload))
        if i % 2 == 0:  # valid messages mixed in
            seq += 1
            good += 1
            messages.append((topic, json.dumps(valid(seq)).encode()))
    assert len(messages) - good == bad >= 10_000
    t0 = time.monotonic()
    client.publish_all(messages)
    wait_until(lambda: len(stored(fleet, dev)) == good, 60, f"{good} valid messages stored")
    drops = wait_until(lambda: (lambda d: d if sum(d.values()) == bad else None)(drops_of(fleet, dev)), 60,
                       f"{bad} bad messages counted")
    assert set(drops) <= {"bad_schema", "not_json", "oversized"}, drops
    print(f"fuzz: {len(messages)} messages ({bad} bad) in {time.monotonic() - t0:.1f} s; drops {drops}")
    read_paths_answer(fleet, dev)
    assert fleet.get(f"/api/v1/devices/{dev}")["telemetry"]["messages"] == good


# -- the writer on a real database: one failing row, a clean stop, a database that is away ---------------------
def _ingest(url: str, **kw):
    from edgeml.fleet import db
    from edgeml.fleet.telemetry import TelemetryIngest

    engine = db.connect(url) if url.startswith("sqlite") else __import__("sqlalchemy").create_engine(url)
    drops: list[tuple[str, str]] = []
    return engine, TelemetryIngest(engine, on_dropped=lambda reason, device: drops.append((reason, device)), **kw), drops


def test_a_row_the_database_refuses_is_dropped_as_db_error_and_the_rest_of_its_batch_is_stored(tmp_path):
    engine, ingest, drops = _ingest(f"sqlite:///{tmp_path / 'f.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TRIGGER poison BEFORE INSERT ON telemetry WHEN NEW.device_id = 'poison' "
                             "BEGIN SELECT RAISE(ABORT, 'poisoned row'); END")
    for seq in range(1, 201):
        ingest.submit("poison" if seq == 77 else "good", Telemetry.parse(valid(seq)))
    ingest.close()
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM telemetry").scalar() == 199
    assert drops == [("db_error", "poison")] and not ingest.pending  # dropped once, never retried


def test_queued_messages_are_stored_on_a_clean_stop(tmp_path):
    engine, ingest, drops = _ingest(f"sqlite:///{tmp_path / 'f.db'}")
    for seq in range(1, 20_001):
        ingest.submit(f"d{seq % 7}", Telemetry.parse(valid(seq)))
    ingest.close()
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM telemetry").scalar() == 20_000
    assert drops == [] and ingest.stored == 20_000


def test_rows_are_kept_while_the_database_does_not_answer():
    from fleet_fixtures import free_port

    engine, ingest, drops = _ingest(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/edgeml?connect_timeout=2")
    try:
        for seq in range(1, 11):
            ingest.submit("d", Telemetry.parse(valid(seq)))
        wait_until(lambda: ingest.failed_flushes >= 3, 60, "a few flushes with the database away")
        assert len(ingest.pending) == 10 and drops == [] and ingest.stored == 0
    finally:
        ingest._stop.set()


def test_an_older_database_with_duplicate_rows_gets_the_unique_index(tmp_path):
    from edgeml.fleet import db

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:  # the telemetry table as an older version made it
        conn.execute("CREATE TABLE telemetry (id INTEGER PRIMARY KEY AUTOINCREMENT, device_id VARCHAR(128) NOT NULL, "
                     "model VARCHAR(128), version VARCHAR(64), received_at FLOAT NOT NULL, seq BIGINT, payload TEXT NOT NULL)")
        conn.executemany("INSERT INTO telemetry (device_id, received_at, seq, payload) VALUES (?,?,?,?)",
                         [("a", 1.0, 1, "{}"), ("a", 2.0, 1, "{}"), ("a", 3.0, 2, "{}"), ("b", 4.0, 1, "{}")])
    engine = db.connect(f"sqlite:///{path}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT device_id, seq, received_at FROM telemetry ORDER BY id").all() == \
            [("a", 1, 1.0), ("a", 2, 3.0), ("b", 1, 4.0)]
    with pytest.raises(Exception, match="UNIQUE"):
        with engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO telemetry (device_id, received_at, seq, payload) VALUES ('a', 5.0, 2, '{}')")


def test_acks_are_batched_per_device_and_retried_when_the_broker_is_away():
    from edgeml.fleet.telemetry_acks import TelemetryAcks
    from edgeml.protocol import Topics

    sent: list[tuple[str, bytes, bool]] = []
    away = threading.Event()

    def publish(topic: str, payload: bytes, retain: bool) -> None:
        if away.is_set():
            raise OSError("broker away")
        sent.append((topic, payload, retain))

    acks = TelemetryAcks(publish, Topics("edgeml"), min_interval_s=3600)
    acks.stored([("a", 1), ("a", 5), ("b", 2), ("a", 3)])
    assert acks.flush() == 2
    assert sorted(sent) == [("edgeml/devices/a/telemetry_ack", b'{"seq":5}', True),
                            ("edgeml/devices/b/telemetry_ack", b'{"seq":2}', True)]
    acks.stored([("a", 9)])
    assert acks.flush() == 0  # not due yet: at most one per device per interval
    away.set()
    assert acks.flush(force=True) == 0 and acks.last_sent("a") == 5
    away.clear()
    assert acks.flush(force=True) == 1 and sent[-1] == ("edgeml/devices/a/telemetry_ack", b'{"seq":9}', True)
    acks.stored([("a", 4)])  # a resend below what was acked (the broker may have lost the retained ack): sent again
    assert acks.flush(force=True) == 1 and sent[-1] == ("edgeml/devices/a/telemetry_ack", b'{"seq":9}', True)


# -- finding 2 end to end: a bad version still rolls back by itself while garbage telemetry arrives -------------
@pytest.mark.slow
def test_a_bad_version_rolls_back_automatically_while_garbage_telemetry_floods_in(tmp_path, keys, broker):
    from rollout_fixtures import FAST_GATES, iris_bundle, start_rig, traffic_file

    good = iris_bundle(tmp_path, keys, "1.0", seed=0)
    bad = iris_bundle(tmp_path, keys, "2.1-bad", seed=2, extra_features=2)  # fails every real request
    rig = start_rig(tmp_path, keys, broker.url, good, devices=5, traffic=traffic_file(tmp_path))
    stop, sent = threading.Event(), [0]
    flood = Client(broker.url, "flood")

    def garbage() -> None:  # the rig's own device topics, hostile payloads as fast as the broker takes them
        ids = [a.config.device_id for a in rig.sim.agents]
        while not stop.is_set():
            infos = [flood.publish(f"edgeml/devices/{d}/telemetry", p) for d in ids for p in HOSTILE]
            for info in infos:
                info.wait_for_publish(30)
            sent[0] += len(infos)

    thread = threading.Thread(target=garbage, daemon=True)
    try:
        thread.start()
        rig.push(bad)
        status, r = rig.start("2.1-bad", waves=[20, 60, 100], gates={**FAST_GATES, "max_p99_ratio": 1.5})
        assert status == 201, r
        done = rig.wait_state(r["id"], ("completed", "rolled_back", "paused"), 90)
        assert done["state"] == "rolled_back", done["decisions"]
        assert "error_rate" in done["decisions"][-1]["reason"]
        assert sent[0] > 1000
        dropped = rig.fleet.get("/api/v1/stats")["dropped_by_device"]
        assert all(dropped.get(a.config.device_id, {}).get("bad_schema", 0) > 0 for a in rig.sim.agents)
        wait_until(lambda: rig.on("1.0"), 60, "every device back on 1.0")
        assert "rollout tick failed" not in rig.fleet.proc.text()
    finally:
        stop.set()
        thread.join(30)
        flood.close()
        rig.stop()
