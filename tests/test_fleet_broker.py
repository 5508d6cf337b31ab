"""The broker side of a fleet: telemetry spooled while the broker is away, per-device credentials and ACLs."""

from __future__ import annotations

import json
import subprocess
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from fleet_fixtures import TOKEN, free_port, start_device, start_fleet, start_mosquitto, wait_until
from test_fleet import X, assign, bundles, device_state, push  # noqa: F401  (fixtures)


@pytest.mark.slow
def test_telemetry_spools_while_the_broker_is_down_and_arrives_after(tmp_path, keys, bundles):
    # A persistent broker, as in production: the fleet's named session (and its subscriptions) survive
    # the restart, so telemetry a device drains before the fleet is back is queued for it, not lost.
    broker = start_mosquitto(tmp_path, persistent=True)
    fleet = start_fleet(tmp_path, keys, broker_url=broker.url)
    device = start_device(tmp_path, "spooler", broker.url, keys[1], interval=0.2)
    try:
        wait_until(lambda: device_state(fleet, "spooler"), 30, "registration")
        broker.stop()
        outbox = device.store / "outbox"
        wait_until(lambda: len([p for p in outbox.iterdir() if p.suffix == ".telemetry"]) >= 5, 20, "spooled telemetry")
        spooled = sorted(json.loads(p.read_bytes())["seq"] for p in outbox.iterdir() if p.suffix == ".telemetry")
        broker.start()  # same port

        def still_spooled() -> set[int]:  # newer telemetry keeps arriving until the fleet acknowledges it
            seqs = set()
            for p in outbox.iterdir():
                if p.suffix == ".telemetry":
                    try:
                        seqs.add(json.loads(p.read_bytes())["seq"])
                    except (OSError, ValueError):  # deleted or being written meanwhile
                        pass
            return seqs

        wait_until(lambda: not (still_spooled() & set(spooled)), 30, "spooled telemetry acknowledged and dropped")

        def stored_seqs():
            from sqlalchemy import create_engine, text

            engine = create_engine(f"sqlite:///{fleet.data / 'fleet.db'}")
            with engine.connect() as conn:
                return {r[0] for r in conn.execute(text("select seq from telemetry where device_id='spooler'"))}

        try:
            wait_until(lambda: set(spooled) <= stored_seqs(), 30, "spooled telemetry stored by the fleet")
        except AssertionError:
            raise AssertionError(f"spooled {spooled}, stored {sorted(stored_seqs())[:20]}, stats {fleet.get('/api/v1/stats')}") from None
    finally:
        device.proc.kill()
        fleet.proc.terminate()
        broker.stop()


def test_outbox_drops_the_oldest_beyond_its_bound(tmp_path):
    from edgeml.runtime.agent.outbox import Outbox

    box = Outbox(tmp_path, max_messages=3)
    for i in range(5):
        box.put("telemetry", json.dumps({"seq": i}).encode())
    assert box.pending() == 3 and box.dropped == 2
    sent = []
    box.drain(lambda kind, payload: sent.append(json.loads(payload)["seq"]) or True)
    assert sent == [2, 3, 4] and box.pending() == 0


def _client(port: int, user: str | None, password: str | None):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{user}-{time.time_ns()}", protocol=mqtt.MQTTv311)
    if user:
        c.username_pw_set(user, password)
    result = {}
    ready = threading.Event()
    c.on_connect = lambda cl, u, f, reason, p: (result.update(rc=reason), ready.set())
    c.connect("127.0.0.1", port)
    c.loop_start()
    ready.wait(10)
    return c, result.get("rc")


def test_provisioned_credentials_confine_a_device_to_its_own_topics(tmp_path, keys, run_cli):
    fleet = start_fleet(tmp_path, keys)
    try:
        creds = json.loads(run_cli("fleet", "provision", "cam-7", "--json", "--server", fleet.url, "--token", TOKEN).stdout)
        assert creds["username"] == "cam-7" and creds["password_file_line"].startswith("cam-7:$7$101$")
        passwd, acl = tmp_path / "passwd", tmp_path / "acl"
        passwd.write_text(creds["password_file_line"] + "\n")
        from edgeml.fleet.provision import fleet_acl_entries, mosquitto_password_hash
        from edgeml.protocol import Topics

        passwd.write_text(passwd.read_text() + f"fleet:{mosquitto_password_hash('fleetpw')}\n")
        acl.write_text("\n".join(creds["acl"] + [""] + fleet_acl_entries("fleet", Topics())) + "\n")
        port = free_port()
        conf = tmp_path / "secure.conf"
        # "user root": no privilege drop, so the broker can read files in the test's private tmp dir.
        conf.write_text(f"user root\nlistener {port} 127.0.0.1\nallow_anonymous false\npassword_file {passwd}\nacl_file {acl}\n")
        proc = subprocess.Popen(["/usr/sbin/mosquitto", "-c", str(conf)], stderr=subprocess.PIPE)
        try:
            from fleet_fixtures import port_open

            wait_until(lambda: port_open(port), 10, "secure mosquitto")
            _, rc = _client(port, "cam-7", "wrong")
            assert rc is not None and rc.is_failure
            watcher, rc = _client(port, "fleet", "fleetpw")
            assert not rc.is_failure
            got: list[str] = []
            watcher.on_message = lambda c, u, m: got.append(m.topic)
            watcher.subscribe("edgeml/devices/#", qos=1)
            device, rc = _client(port, "cam-7", creds["password"])
            assert not rc.is_failure
            device.publish("edgeml/devices/cam-7/telemetry", b"{}", qos=1).wait_for_publish(5)
            device.publish("edgeml/devices/cam-8/telemetry", b"{}", qos=1).wait_for_publish(5)  # not its own: denied
            wait_until(lambda: "edgeml/devices/cam-7/telemetry" in got, 10, "own topic delivered")
            time.sleep(0.5)  # give a wrongly allowed message time to arrive
            assert "edgeml/devices/cam-8/telemetry" not in got
        finally:
            proc.terminate()
            proc.wait(10)
    finally:
        fleet.proc.terminate()


@pytest.mark.slow
def test_ingest_workers_split_telemetry_through_shared_subscriptions(tmp_path, keys):
    from test_fleet_failures import publish

    broker = start_mosquitto(tmp_path)
    fleet = start_fleet(tmp_path, keys, broker_url=broker.url, extra=["--ingest-workers", "2"])
    devices = [start_device(tmp_path, f"w{i}", broker.url, keys[1], interval=0.2) for i in range(2)]
    try:
        wait_until(lambda: all(fleet.device(d.device_id) and fleet.device(d.device_id)["telemetry"]["messages"] >= 5
                               for d in devices), 40, "telemetry stored by the workers")
        publish(broker.url, "edgeml/devices/w0/telemetry", b"not json")
        stats = wait_until(lambda: (lambda s: s if s["dropped"].get("not_json") else None)(fleet.get("/api/v1/stats")),
                           20, "the workers' counters in /api/v1/stats")
        assert stats["ingest_workers"] == 2 and stats["telemetry_stored"] >= 10
        assert stats["received"].get("telemetry", 0) >= 10
    finally:
        for d in devices:
            d.proc.kill()
        fleet.proc.terminate()
        broker.stop()


def test_ingest_workers_need_shared_subscriptions(tmp_path, keys):
    from fleet_fixtures import spawn

    proc = spawn(["fleet", "serve", "--data", str(tmp_path / "f"), "--http-port", str(free_port()),
                  "--mqtt-port", str(free_port()), "--ingest-workers", "2"], tmp_path / "f.log", tmp_path)
    assert proc.proc.wait(60) != 0
    text = proc.text()
    assert "Error: --ingest-workers above 1 needs a broker with shared subscriptions" in text and "Traceback" not in text
