"""What authentication and topic ACLs cost the embedded broker: telemetry messages/s from one device to the
fleet's subscriber, through the authenticated broker (the default) and the anonymous one
(`--insecure-broker`), measured in the same run. Prints medians and their ratio, writes JSON.

    python benchmarks/embedded_broker_auth.py [--messages 3000] [--runs 3] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import threading
import time

import paho.mqtt.client as mqtt

from edgeml.fleet.broker import EmbeddedBroker
from edgeml.fleet.broker_auth import BrokerAuthority
from edgeml.fleet.provision import FLEET_USERNAME, mosquitto_password_hash
from edgeml.protocol import Topics

DEVICE, DEVICE_PW, FLEET_PW = "bench-dev", "bench-device-password", "bench-fleet-password"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def client(port: int, client_id: str, user: str | None, password: str | None) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
    if user:
        c.username_pw_set(user, password)
    c.max_inflight_messages_set(1000)
    up = threading.Event()
    c.on_connect = lambda *a: up.set()
    c.connect("127.0.0.1", port)
    c.loop_start()
    if not up.wait(10):
        raise SystemExit(f"{client_id} could not connect")
    return c


def one_run(secure: bool, messages: int) -> float:
    port = free_port()
    authority = None
    if secure:
        hashed = mosquitto_password_hash(DEVICE_PW)
        authority = BrokerAuthority(Topics(), FLEET_PW, {DEVICE: hashed}.get)
    broker = EmbeddedBroker("127.0.0.1", port, authority).start()
    try:
        got, done = [0], threading.Event()
        fleet = client(port, "edgeml-fleet-bench", FLEET_USERNAME if secure else None, FLEET_PW)

        def on_message(*_a) -> None:
            got[0] += 1
            if got[0] >= messages:
                done.set()

        fleet.on_message = on_message
        subscribed = threading.Event()
        fleet.on_subscribe = lambda *a: subscribed.set()
        fleet.subscribe("edgeml/devices/+/telemetry", qos=1)
        subscribed.wait(10)
        device = client(port, DEVICE, DEVICE if secure else None, DEVICE_PW)
        payload = json.dumps({"seq": 1, "interval_s": 1.0, "requests": 10, "errors": 0}).encode()
        t0 = time.perf_counter()
        for _ in range(messages):
            device.publish(f"edgeml/devices/{DEVICE}/telemetry", payload, qos=1)
        if not done.wait(300):
            raise SystemExit(f"only {got[0]} of {messages} messages arrived")
        rate = messages / (time.perf_counter() - t0)
        for c in (device, fleet):
            c.disconnect()
            c.loop_stop()
        return rate
    finally:
        broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", default="embedded_broker_auth.json")
    args = parser.parse_args()
    rates: dict[str, list[float]] = {"insecure": [], "authenticated": []}
    for _ in range(args.runs):  # interleaved, so load on the machine hits both alike
        rates["insecure"].append(one_run(False, args.messages))
        rates["authenticated"].append(one_run(True, args.messages))
    medians = {k: statistics.median(v) for k, v in rates.items()}
    ratio = medians["authenticated"] / medians["insecure"]
    print(f"{'broker':<15} {'median msgs/s':>14}  runs")
    for k, v in rates.items():
        print(f"{k:<15} {medians[k]:>14,.0f}  {', '.join(f'{r:,.0f}' for r in v)}")
    print(f"authenticated / insecure: {ratio:.2f}x")
    with open(args.out, "w") as f:
        json.dump({"messages": args.messages, "runs": rates, "medians": medians, "ratio": ratio}, f, indent=2)


if __name__ == "__main__":
    main()
