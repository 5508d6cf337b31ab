"""Real processes for the fleet tests: Mosquitto on a free port, `edgeml fleet serve`, `edgeml serve --fleet`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

MOSQUITTO = "/usr/sbin/mosquitto"
TOKEN = "test-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except (OSError, urllib.error.URLError, ValueError, KeyError):
            value = None
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Mosquitto:
    port: int
    conf: Path
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> "Mosquitto":
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_until(lambda: port_open(self.port), 10, "mosquitto to listen")
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def start_mosquitto(root: Path, extra: str = "", port: int | None = None, persistent: bool = False) -> Mosquitto:
    """Mosquitto on a free port; `persistent` keeps sessions and queued messages across a restart."""
    port = port or free_port()
    conf = root / f"mosquitto-{port}.conf"
    store = root / f"mosquitto-{port}-db"
    store.mkdir(exist_ok=True)
    persistence = f"user root\npersistence true\npersistence_location {store}/\n" if persistent else "persistence false\n"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n{persistence}{extra}")
    return Mosquitto(port, conf).start()


@dataclass
class Proc:
    proc: subprocess.Popen
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def terminate(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait(5)


def spawn(args: list[str], log: Path, cwd: Path) -> Proc:
    out = open(log, "wb")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return Proc(subprocess.Popen([sys.executable, "-m", "edgeml", *args], stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=env), log)


@dataclass
class Fleet:
    url: str
    proc: Proc
    data: Path
    broker_url: str
    token: str = TOKEN

    def api(self, method: str, path: str, body: Any = None, token: str | None = "default") -> tuple[int, Any]:
        data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
        req = urllib.request.Request(self.url + path, data=data, method=method)
        tok = self.token if token == "default" else token
        if tok:
            req.add_header("Authorization", f"Bearer {tok}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def get(self, path: str) -> Any:
        status, body = self.api("GET", path)
        assert status == 200, (status, body)
        return body

    def device(self, device_id: str) -> dict[str, Any] | None:
        status, body = self.api("GET", f"/api/v1/devices/{device_id}")
        return body if status == 200 else None


# Fleets started with their embedded broker, by broker URL: that broker admits only provisioned devices,
# so start_device / device_login provision a device through the fleet's API before it connects.
EMBEDDED: dict[str, Fleet] = {}


def device_login(broker_url: str, device_id: str) -> str:
    """The URL a device connects with: for an embedded (authenticated) fleet broker, with freshly
    provisioned credentials; any other broker URL as given."""
    fleet = EMBEDDED.get(broker_url)
    if fleet is None:
        return broker_url
    status, body = fleet.api("POST", f"/api/v1/devices/{device_id}/provision")
    assert status == 200, (status, body)
    return body["device_url"]


def start_fleet(root: Path, keys: tuple[Path, Path], broker_url: str | None = None, mqtt_port: int | None = None,
                extra: list[str] | None = None, http_port: int | None = None, data: Path | None = None) -> Fleet:
    http = http_port or free_port()
    embedded = broker_url is None
    data = data or root / f"fleet-{http}"
    args = ["fleet", "serve", "--http-port", str(http), "--data", str(data), "--token", TOKEN,
            "--sign-key", str(keys[0]), "--verify-key", str(keys[1])]
    if broker_url:
        args += ["--broker", broker_url]
    else:
        mqtt_port = mqtt_port or free_port()
        args += ["--mqtt-port", str(mqtt_port)]
        broker_url = f"mqtt://127.0.0.1:{mqtt_port}"
    args += extra or []
    proc = spawn(args, root / f"fleet-{http}-{time.time_ns()}.log", root)
    fleet = Fleet(f"http://127.0.0.1:{http}", proc, data, broker_url)
    try:
        wait_until(lambda: fleet.api("GET", "/api/v1/health")[1]["mqtt_connected"], 60, "the fleet service")
    except AssertionError:
        proc.kill()
        raise AssertionError("fleet did not start:\n" + proc.text())
    if embedded and "--insecure-broker" not in (extra or []):
        EMBEDDED[broker_url] = fleet
    return fleet


@dataclass
class Device:
    device_id: str
    port: int
    store: Path
    proc: Proc
    args: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/v2/health/ready", timeout=5) as r:
                return r.status == 200
        except urllib.error.HTTPError:
            return False

    def restart(self, root: Path) -> "Device":
        self.proc.kill()
        self.proc = spawn(self.args, root / f"{self.device_id}-restart-{time.time_ns()}.log", root)
        return self


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def start_device(root: Path, device_id: str, broker_url: str, public_key: Path, tags: str = "", interval: float = 0.5,
                 extra: list[str] | None = None) -> Device:
    port = free_port()
    store = root / f"store-{device_id}"
    args = ["serve", "--fleet", device_login(broker_url, device_id), "--device-id", device_id, "--store", str(store), "--port", str(port),
            "--verify-key", str(public_key), "--telemetry-interval", str(interval)]
    if tags:
        args += ["--tags", tags]
    args += extra or []
    proc = spawn(args, root / f"{device_id}.log", root)
    device = Device(device_id, port, store, proc, args)
    wait_until(lambda: port_open(port), 30, f"device {device_id} to listen")
    return device


def infer(url: str, model: str, features) -> dict[str, Any]:
    body = {"inputs": [{"name": "input", "shape": [len(features), len(features[0])], "datatype": "FP32",
                        "data": [v for row in features for v in row]}]}
    req = urllib.request.Request(f"{url}/v2/models/{model}/infer", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def served_version(device: Device, model: str) -> str | None:
    try:
        return _get_json(f"{device.url}/v2/models/{model}")["versions"][0]
    except Exception:
        return None


@dataclass
class Postgres:
    port: int
    data: Path
    proc: subprocess.Popen

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/edgeml"

    def stop(self) -> None:
        import shutil

        self.proc.terminate()
        self.proc.wait(20)
        shutil.rmtree(self.data.parent, ignore_errors=True)


PG_BIN = Path("/usr/lib/postgresql/15/bin")


def start_postgres(root: Path) -> Postgres:
    """A throwaway PostgreSQL server (Debian's postgresql package) on a free port, trust auth on loopback."""
    import shutil
    import tempfile

    # The server runs as the postgres user, which cannot enter pytest's private tmp dirs.
    home = Path(tempfile.mkdtemp(prefix="edgeml-pg-"))
    shutil.chown(home, "postgres")
    data, sockets = home / "data", home / "sock"
    run_as = ["runuser", "-u", "postgres", "--"]
    subprocess.run(run_as + [str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True)
    subprocess.run(run_as + ["mkdir", str(sockets)], check=True)
    port = free_port()
    proc = subprocess.Popen(run_as + [str(PG_BIN / "postgres"), "-D", str(data), "-p", str(port), "-k", str(sockets),
                                      "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(lambda: port_open(port), 30, "postgres")
    wait_until(lambda: subprocess.run(run_as + [str(PG_BIN.parent / "bin" / "createdb"), "-h", "127.0.0.1", "-p", str(port), "edgeml"],
                                      capture_output=True).returncode == 0, 30, "createdb")
    return Postgres(port, data, proc)
