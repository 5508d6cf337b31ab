"""Telemetry ingest through Mosquitto into the fleet's store vs the raw ceiling of a bare paho subscriber.

Both runs use the same broker, the same publishers (mosquitto_pub processes, C, publishing realistic
telemetry messages at QoS 1 as fast as the broker takes them) and the same message count, one after
the other in one run. Ingest rate = messages stored in the database per second, from the first to the last one.
Target (issue 5): >= 10,000 msgs/s and >= 0.5 of the raw ceiling.

    python benchmarks/fleet_ingest.py [--messages 60000] [--publishers 4]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def telemetry(seq: int) -> bytes:
    return json.dumps({
        "seq": seq, "ts": time.time(), "interval_s": 10.0, "model": "iris", "version": "1.0", "requests": 120, "errors": 1,
        "latency": {"buckets": [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0],
                    "counts": [3, 40, 50, 20, 5, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]},
        "cpu_percent": 12.5, "rss_bytes": 80_000_000,
        "features": {f"input[{i}]": [5, 9, 12, 10, 8, 11, 9, 10, 12, 14] for i in range(4)},
        "prediction": [40, 41, 39, 0], "dropped": 0,
    }).encode()


def publish_all(port: int, total: int, publishers: int, devices: int, tmp: Path | None = None):
    """Start `publishers` mosquitto_pub processes (C, QoS 1, one message per input line), each as one
    device, publishing total/publishers telemetry messages as fast as the broker accepts them."""
    tmp = tmp or Path(tempfile.mkdtemp())
    per = total // publishers
    lines = tmp / "telemetry.lines"
    lines.write_bytes(b"\n".join(telemetry(i) for i in range(per)) + b"\n")
    procs = []
    t0 = time.perf_counter()
    for i in range(publishers):
        with open(lines, "rb") as stdin:
            procs.append(subprocess.Popen(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-l",
                                           "-i", f"bench-pub-{i}", "-t", f"edgeml/devices/bench-{i % devices:05d}/telemetry"],
                                          stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return t0, procs


def raw_ceiling(port: int, total: int, publishers: int, devices: int) -> float:
    import paho.mqtt.client as mqtt

    got = {"n": 0, "first": None, "last": None}
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-raw", protocol=mqtt.MQTTv311)

    def on_message(_c, _u, _m) -> None:
        now = time.perf_counter()
        got["first"] = got["first"] or now
        got["n"] += 1
        got["last"] = now

    sub.on_message = on_message
    sub.connect("127.0.0.1", port)
    sub.subscribe("edgeml/devices/+/telemetry", qos=1)
    sub.loop_start()
    time.sleep(0.5)
    _, procs = publish_all(port, total, publishers, devices)
    expected = (total // publishers) * publishers
    deadline = time.monotonic() + 300
    while got["n"] < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    for p in procs:
        p.wait()
    sub.disconnect()
    sub.loop_stop()
    return got["n"] / (got["last"] - got["first"])


def fleet_ingest(port: int, total: int, publishers: int, devices: int, tmp: Path, workers: int = 1) -> float:
    """Start `edgeml fleet serve` on the broker, register the devices, then measure stored msgs/s."""
    from sqlalchemy import create_engine, text

    import paho.mqtt.client as mqtt

    http = free_port()
    fleet = subprocess.Popen([sys.executable, "-m", "edgeml", "fleet", "serve", "--broker", f"mqtt://127.0.0.1:{port}",
                              "--http-port", str(http), "--data", str(tmp / f"fleet-{workers}"),
                              "--ingest-workers", str(workers)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        import urllib.request

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if json.loads(urllib.request.urlopen(f"http://127.0.0.1:{http}/api/v1/health").read())["mqtt_connected"]:
                    break
            except OSError:
                time.sleep(0.2)
        reg = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-reg", protocol=mqtt.MQTTv311)
        reg.connect("127.0.0.1", port)
        reg.loop_start()
        for d in range(devices):
            reg.publish(f"edgeml/devices/bench-{d:05d}/status", b"online", qos=1, retain=True)
        time.sleep(2.0)
        engine = create_engine(f"sqlite:///{tmp / f'fleet-{workers}' / 'fleet.db'}")
        _, procs = publish_all(port, total, publishers, devices)
        expected = (total // publishers) * publishers
        first = last = None
        seen = 0
        deadline = time.monotonic() + 600
        while seen < expected and time.monotonic() < deadline:
            with engine.connect() as conn:
                seen, lo, hi = conn.execute(text("select count(*), min(received_at), max(received_at) from telemetry")).one()
            time.sleep(0.2)
        for p in procs:
            p.wait()
        with engine.connect() as conn:
            seen, lo, hi = conn.execute(text("select count(*), min(received_at), max(received_at) from telemetry")).one()
            distinct = conn.execute(text("select count(*) from (select distinct device_id, seq from telemetry)")).scalar()
        if distinct != expected or seen != expected:
            print(f"WARNING: {workers} worker(s) stored {seen} rows, {distinct} distinct, of {expected} published")
        for d in range(devices):  # clear the retained status messages
            reg.publish(f"edgeml/devices/bench-{d:05d}/status", b"", qos=1, retain=True)
        reg.disconnect()
        reg.loop_stop()
        return seen / (hi - lo), seen
    finally:
        fleet.terminate()
        fleet.wait(20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=60000)
    parser.add_argument("--publishers", type=int, default=4)
    parser.add_argument("--devices", type=int, default=4)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="ingest processes of the second fleet run")
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        conf = tmp / "mosquitto.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_inflight_messages 1000\nmax_queued_messages 1000000\n")
        broker = subprocess.Popen(["/usr/sbin/mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        try:
            raw = raw_ceiling(port, args.messages, args.publishers, args.devices)
            one, stored1 = fleet_ingest(port, args.messages, args.publishers, args.devices, tmp, 1)
            many, stored = fleet_ingest(port, args.messages, args.publishers, args.devices, tmp, args.workers)
        finally:
            broker.terminate()
    row = {"messages": args.messages, "publishers": args.publishers, "raw_subscriber_msgs_per_s": raw,
           "fleet_ingest_1_worker_msgs_per_s": one, "fleet_ingest_msgs_per_s": many, "ingest_workers": args.workers,
           "stored": stored, "ratio": many / raw, "ratio_1_worker": one / raw, "cores": os.cpu_count()}
    print(f"{'raw paho subscriber':>30}: {raw:10.0f} msgs/s")
    print(f"{'fleet ingest, 1 process':>30}: {one:10.0f} msgs/s  ratio {one / raw:.2f}")
    print(f"{f'fleet ingest, {args.workers} workers':>30}: {many:10.0f} msgs/s  ratio {many / raw:.2f}  ({stored} stored)")
    print(f"{'targets':>30}: >= 10000 msgs/s and >= 0.5 of the ceiling")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fleet_ingest.json").write_text(json.dumps(row, indent=2))


if __name__ == "__main__":
    main()
