"""Attacks on the fleet's brokers (issue 13, findings 3 and 4): the embedded broker of `edgeml fleet serve`
(the default) and a Mosquitto configured from `edgeml fleet provision`'s output, probed with raw MQTT
clients: anonymous and wrong logins, another device's username or client id, another device's topics,
`#`, a forged Last Will."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from fleet_fixtures import MOSQUITTO, TOKEN, free_port, port_open, spawn, start_fleet, wait_until

FLEET_USER = "edgeml-fleet"


@dataclass
class Probe:
    """A raw MQTT 3.1.1 client that records what happens to it."""

    client: mqtt.Client
    rc: object = None
    connected: threading.Event = field(default_factory=threading.Event)
    disconnected: threading.Event = field(default_factory=threading.Event)
    messages: list[tuple[str, bytes]] = field(default_factory=list)
    granted: dict[int, list[int]] = field(default_factory=dict)

    def topics(self) -> list[str]:
        return [t for t, _ in self.messages]

    def subscribe(self, *filters: str) -> list[int]:
        _, mid = self.client.subscribe([(f, 1) for f in filters])
        return wait_until(lambda: self.granted.get(mid), 10, f"SUBACK for {filters}")

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def probe(port: int, user: str | None, password: str | None, client_id: str, will: tuple[str, bytes] | None = None,
          clean: bool = True) -> Probe:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311, clean_session=clean)
    c.reconnect_delay_set(60, 60)  # a refused or kicked probe stays away: reconnects would blur what happened
    if user is not None:
        c.username_pw_set(user, password)
    if will:
        c.will_set(will[0], will[1], qos=1, retain=True)
    p = Probe(c)

    def on_connect(_c, _u, _f, rc, _p) -> None:
        p.rc = rc
        p.connected.set()

    def on_subscribe(_c, _u, mid, codes, _p) -> None:
        p.granted[mid] = [code.value for code in codes]

    c.on_connect = on_connect
    c.on_disconnect = lambda *a: p.disconnected.set()
    c.on_message = lambda _c, _u, m: p.messages.append((m.topic, m.payload))
    c.on_subscribe = on_subscribe
    c.connect("127.0.0.1", port, keepalive=30)
    c.loop_start()
    assert p.connected.wait(15), f"no CONNACK for {user}/{client_id}"
    return p


def accepted(p: Probe) -> bool:
    return not p.rc.is_failure


def provision(fleet, device_id: str) -> dict:
    status, body = fleet.api("POST", f"/api/v1/devices/{device_id}/provision")
    assert status == 200, body
    return body


@pytest.fixture(scope="module")
def embedded(tmp_path_factory, keys):
    """A fleet on its default, embedded broker, and the port of that broker."""
    root = tmp_path_factory.mktemp("auth")
    fleet = start_fleet(root, keys)
    yield fleet, int(fleet.broker_url.rsplit(":", 1)[1])
    fleet.proc.terminate()


@pytest.fixture(scope="module")
def watcher(embedded):
    """The fleet's own user (its password lives in the data dir) watching every device topic."""
    fleet, port = embedded
    password = (fleet.data / "mqtt-fleet.password").read_text().strip()
    w = probe(port, FLEET_USER, password, f"{FLEET_USER}-watcher")
    assert accepted(w)
    assert w.subscribe("edgeml/devices/#") == [1]
    yield w
    w.close()


def barrier(device: Probe, watcher: Probe, device_id: str) -> None:
    """Wait until a marker the device publishes on its own telemetry topic reaches the watcher: everything
    the device sent before it has been routed (one connection's messages are handled in order)."""
    marker = f"marker-{time.time_ns()}".encode()
    device.publish(f"edgeml/devices/{device_id}/telemetry", marker)
    wait_until(lambda: (f"edgeml/devices/{device_id}/telemetry", marker) in watcher.messages, 15, "the marker")


# -- the embedded broker ------------------------------------------------------------------------------------
def test_embedded_broker_refuses_anonymous_wrong_and_borrowed_logins(embedded):
    fleet, port = embedded
    a, b = provision(fleet, "auth-a"), provision(fleet, "auth-b")
    assert fleet.api("GET", "/api/v1/broker")[1]["provisioned_login"] is True
    refused = [probe(port, None, None, "anon"),  # anonymous
               probe(port, "auth-a", "not-the-password", "auth-a"),  # wrong password
               probe(port, "auth-a", b["password"], "auth-a"),  # another device's password
               probe(port, "auth-b", b["password"], "auth-a"),  # valid login, another device's client id
               probe(port, "ghost", "x", "ghost"),  # never provisioned
               probe(port, FLEET_USER, "guess", "edgeml-fleet-x"),  # the fleet's user, wrong password
               probe(port, "auth-a", a["password"], "auth-a", will=("edgeml/devices/auth-b/status", b"offline"))]  # forged Will
    try:
        assert [accepted(p) for p in refused] == [False] * len(refused)
        ok = probe(port, "auth-a", a["password"], "auth-a", will=("edgeml/devices/auth-a/status", b"offline"))
        assert accepted(ok)
        ok.close()
        # Provisioning again replaces the credentials: the old password stops working.
        fresh = provision(fleet, "auth-a")
        assert not accepted(probe(port, "auth-a", a["password"], "auth-a"))
        assert accepted(probe(port, "auth-a", fresh["password"], "auth-a"))
    finally:
        for p in refused:
            p.close()


def test_a_device_reaches_only_its_own_topics_on_the_embedded_broker(embedded, watcher):
    fleet, port = embedded
    a, b = provision(fleet, "acl-a"), provision(fleet, "acl-b")
    dev_a = probe(port, "acl-a", a["password"], "acl-a")
    dev_b = probe(port, "acl-b", b["password"], "acl-b")
    try:
        assert accepted(dev_a) and accepted(dev_b)
        # Subscriptions: its own desired and telemetry_ack are granted; `#`, another device's desired and
        # the fleet's view of all devices are refused (SUBACK 0x80).
        assert dev_a.subscribe("edgeml/devices/acl-a/desired", "edgeml/devices/acl-a/telemetry_ack") == [1, 1]
        assert dev_a.subscribe("#", "edgeml/devices/acl-b/desired", "edgeml/devices/+/reported") == [0x80] * 3
        assert dev_b.subscribe("edgeml/devices/acl-b/desired") == [1]
        # The fleet's desired documents reach only their own device.
        watcher.publish("edgeml/devices/acl-b/desired", b'{"for": "b"}', retain=True)
        watcher.publish("edgeml/devices/acl-a/desired", b'{"for": "a"}', retain=True)
        wait_until(lambda: ("edgeml/devices/acl-b/desired", b'{"for": "b"}') in dev_b.messages, 15, "b's desired at b")
        wait_until(lambda: ("edgeml/devices/acl-a/desired", b'{"for": "a"}') in dev_a.messages, 15, "a's desired at a")
        # Publishing: a forges b's reported state, status and telemetry and writes b's desired document;
        # none of it gets through, while its own telemetry does.
        forged = {"edgeml/devices/acl-b/reported": b'{"state": "active", "seq": 9223372036854775807}',
                  "edgeml/devices/acl-b/status": b"offline", "edgeml/devices/acl-b/telemetry": b"{}",
                  "edgeml/devices/acl-b/desired": b'{"evil": true}', "edgeml/devices/acl-a/desired": b'{"self": 1}'}
        for topic, payload in forged.items():
            dev_a.publish(topic, payload, retain=True)
        barrier(dev_a, watcher, "acl-a")
        assert not [m for m in watcher.messages if m in forged.items()]
        assert not [m for m in dev_b.messages if m[1] == b'{"evil": true}']
        assert "edgeml/devices/acl-b/desired" not in dev_a.topics()
        assert fleet.device("acl-b")["state"] != "active"  # the forged retained state never reached the fleet
    finally:
        dev_a.close()
        dev_b.close()


def test_a_device_cannot_take_over_another_devices_session_on_the_embedded_broker(embedded, watcher):
    fleet, port = embedded
    a, b = provision(fleet, "tk-a"), provision(fleet, "tk-b")
    victim = probe(port, "tk-b", b["password"], "tk-b", will=("edgeml/devices/tk-b/status", b"offline"), clean=False)
    try:
        assert accepted(victim) and victim.subscribe("edgeml/devices/tk-b/desired") == [1]
        # amqtt on its own deletes a clean-session client id's session, or takes over a persistent one,
        # before it checks the newcomer's credentials.
        attempts = [probe(port, "tk-a", a["password"], "tk-b", clean=clean)  # valid login, the victim's client id
                    for clean in (True, False)]
        attempts += [probe(port, user, password, "tk-b", clean=clean)  # anonymous / the victim's name, wrong password
                     for user, password in ((None, None), ("tk-b", "wrong")) for clean in (True, False)]
        assert [accepted(p) for p in attempts] == [False] * len(attempts)
        for p in attempts:
            p.close()
        # The victim is still connected with its subscriptions: it still gets its desired document.
        watcher.publish("edgeml/devices/tk-b/desired", b'{"still": "here"}', retain=True)
        wait_until(lambda: ("edgeml/devices/tk-b/desired", b'{"still": "here"}') in victim.messages, 15, "delivery")
        dev_a = probe(port, "tk-a", a["password"], "tk-a")
        barrier(dev_a, watcher, "tk-a")
        dev_a.close()
        assert not victim.disconnected.is_set()
        assert ("edgeml/devices/tk-b/status", b"offline") not in watcher.messages  # its Last Will never fired
    finally:
        victim.close()


def test_a_real_device_daemon_joins_the_authenticated_embedded_broker_and_an_unprovisioned_one_cannot(
        embedded, tmp_path, keys):
    from fleet_fixtures import start_device

    fleet, _ = embedded
    device = start_device(tmp_path, "auth-real", fleet.broker_url, keys[1])  # provisions, then connects with the URL
    intruder = spawn(["serve", "--fleet", fleet.broker_url, "--device-id", "auth-intruder", "--store", str(tmp_path / "i"),
                      "--port", str(free_port()), "--verify-key", str(keys[1])], tmp_path / "intruder.log", tmp_path)
    try:
        wait_until(lambda: (fleet.device("auth-real") or {}).get("online") is True, 30, "the provisioned device online")
        wait_until(lambda: "broker refused device auth-intruder" in intruder.text(), 30, "the intruder refused")
        assert fleet.device("auth-intruder") is None  # it never reached the fleet
        assert "Traceback" not in intruder.text()
        password = device.args[device.args.index("--fleet") + 1].split(":")[2].split("@")[0]
        assert password and password not in device.proc.text() and ":***@" in device.proc.text()  # redacted in the log
    finally:
        device.proc.kill()
        intruder.kill()


def test_insecure_broker_is_explicit_and_warns(tmp_path, keys):
    fleet = start_fleet(tmp_path, keys, extra=["--insecure-broker"])
    try:
        anonymous = probe(int(fleet.broker_url.rsplit(":", 1)[1]), None, None, "anon")
        assert accepted(anonymous)
        anonymous.close()
        assert "warning: --insecure-broker" in fleet.proc.text()
        assert fleet.api("GET", "/api/v1/broker")[1]["provisioned_login"] is False
    finally:
        fleet.proc.terminate()


def test_fleet_refuses_an_empty_token_and_reserved_device_ids(run_cli, embedded, tmp_path):
    fleet, _ = embedded
    result = run_cli("fleet", "serve", "--token", "", "--data", tmp_path / "f", "--http-port", free_port())
    assert result.exit_code != 0 and result.error_lines and "--token is empty" in result.error_lines[0]
    assert not (tmp_path / "f").exists()  # refused before anything started
    status, body = fleet.api("POST", "/api/v1/devices/edgeml-fleet-x/provision")
    assert status == 422 and "reserved" in body["error"]
    # A device logs in as itself: a URL naming another user is refused up front, with its password hidden.
    result = run_cli("serve", "--fleet", "mqtt://cam-2:s3cret@127.0.0.1:1", "--device-id", "cam-1", "--store", tmp_path / "s",
                     "--insecure")
    assert result.exit_code != 0 and "a device's MQTT username is its --device-id" in result.error_lines[0]
    assert "s3cret" not in result.output


# -- Mosquitto configured from `edgeml fleet provision` -----------------------------------------------------
def test_mosquitto_configured_from_provision_output_stops_takeover_and_cross_reads(embedded, run_cli, tmp_path):
    from edgeml.fleet.provision import mosquitto_password_hash

    fleet, _ = embedded
    out = {d: run_cli("fleet", "provision", d, "--server", fleet.url, "--token", TOKEN) for d in ("mq-a", "mq-b")}
    assert all(r.exit_code == 0 for r in out.values())
    creds = {d: json.loads(run_cli("fleet", "provision", d, "--json", "--server", fleet.url, "--token", TOKEN).stdout)
             for d in ("mq-a", "mq-b")}
    text = out["mq-a"].stdout
    for line in ("allow_anonymous false", "use_username_as_clientid true", "topic read edgeml/devices/mq-a/telemetry_ack",
                 f"user {FLEET_USER}", "topic write edgeml/devices/+/desired", "topic read edgeml/devices/#"):
        assert line in text, line
    # Build the broker exactly from what provision printed (--json of the same command): conf lines,
    # password-file lines, ACL lines, plus the fleet user's password set with the mosquitto_passwd format.
    passwd, acl, port = tmp_path / "passwd", tmp_path / "acl", free_port()
    passwd.write_text("".join(c["password_file_line"] + "\n" for c in creds.values())
                      + f"{FLEET_USER}:{mosquitto_password_hash('fleetpw')}\n")
    acl.write_text("\n\n".join("\n".join(c["acl"]) for c in creds.values()) + "\n\n" + "\n".join(creds["mq-a"]["fleet_acl"]) + "\n")
    conf_lines = [line.replace("/etc/mosquitto/edgeml.passwd", str(passwd)).replace("/etc/mosquitto/edgeml.acl", str(acl))
                  for line in creds["mq-a"]["mosquitto_conf"]]
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"user root\nlistener {port} 127.0.0.1\npersistence false\n" + "\n".join(conf_lines) + "\n")
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    probes: list[Probe] = []
    try:
        wait_until(lambda: port_open(port), 10, "mosquitto")
        anonymous = probe(port, None, None, "anon")
        probes.append(anonymous)
        assert not accepted(anonymous)
        watch = probe(port, FLEET_USER, "fleetpw", "whatever")
        probes.append(watch)
        assert accepted(watch) and watch.subscribe("edgeml/devices/#") == [1]
        victim = probe(port, "mq-b", creds["mq-b"]["password"], "mq-b", will=("edgeml/devices/mq-b/status", b"offline"))
        probes.append(victim)
        assert accepted(victim) and victim.subscribe("edgeml/devices/mq-b/desired") == [1]
        watch.publish("edgeml/devices/mq-b/desired", b'{"for": "b"}', retain=True)
        wait_until(lambda: ("edgeml/devices/mq-b/desired", b'{"for": "b"}') in victim.messages, 15, "b's desired")
        # Device A, valid credentials, B's client id: Mosquitto renames it to its username, B stays.
        attacker = probe(port, "mq-a", creds["mq-a"]["password"], "mq-b")
        probes.append(attacker)
        assert accepted(attacker)
        attacker.subscribe("edgeml/devices/mq-b/desired", "#")  # granted or not, nothing may be delivered
        watch.publish("edgeml/devices/mq-a/desired", b'{"for": "a"}', retain=True)
        attacker.subscribe("edgeml/devices/mq-a/desired")
        wait_until(lambda: ("edgeml/devices/mq-a/desired", b'{"for": "a"}') in attacker.messages, 15, "a's own desired")
        barrier(attacker, watch, "mq-a")
        assert "edgeml/devices/mq-b/desired" not in attacker.topics()  # A cannot read B's desired document
        assert not victim.disconnected.is_set()  # B was not disconnected ...
        assert ("edgeml/devices/mq-b/status", b"offline") not in watch.messages  # ... and its Last Will never fired
    finally:
        for p in probes:
            p.close()
        proc.terminate()
        proc.wait(10)
