"""Attacks on the real `edgeml serve` (a subprocess on a tiny model): slowloris floods, slow bodies,
and >= 10,000 fuzzed infer bodies (issue 13, finding 9). Legitimate requests must keep succeeding,
slow clients get 408 or are closed, and no bad body gets a 5xx."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleet_fixtures import free_port, wait_until
from runtime_fixtures import N_FEATURES, bundles, infer_body, samples

GOOD = None  # set by the server fixture: a valid infer body (bytes)


class Server:
    def __init__(self, *args: str) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edgeml", "serve", str(bundles().mlp), "--port", str(self.port),
             "--precision", "fp32", "--threads", "1", *args],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        wait_until(lambda: self.get("/v2/health/ready")[0] == 200, 60, "edgeml serve to be ready")

    def conn(self, timeout: float = 30.0) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def get(self, path: str) -> tuple[int, bytes]:
        c = self.conn()
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def metric(self, line_start: str) -> float:
        text = self.get("/metrics")[1].decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(line_start):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self) -> str:
        self.proc.terminate()
        try:
            _, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err.decode(errors="replace")


def _good_body() -> bytes:
    return json.dumps(infer_body({"input": samples(bundles().mlp)[0]["input"][:1]})).encode()


@pytest.fixture(scope="module")
def good() -> bytes:
    return _good_body()


def _legit(server: Server, good: bytes, n: int) -> list[int]:
    """n infer requests, each on a fresh connection (the worst case under a flood), then n on one keep-alive connection."""
    statuses = []
    for _ in range(n):
        c = server.conn()
        c.request("POST", "/v2/models/mlp/infer", body=good, headers={"Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        statuses.append(r.status)
        c.close()
    c = server.conn()
    for _ in range(n):
        c.request("POST", "/v2/models/mlp/infer", body=good, headers={"Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        statuses.append(r.status)
    c.close()
    return statuses


class Slowloris:
    """`count` connections from `source` that never finish a request: half dribble a head one byte
    at a time, half send a complete head and then dribble a body that never completes. Evicted or
    timed-out connections are reopened, as a real attacker does."""

    def __init__(self, port: int, count: int, source: str = "127.0.0.1") -> None:
        self.port, self.count, self.source = port, count, source
        self.socks: list[tuple[socket.socket, bytes, int]] = []
        self.stop = threading.Event()
        self.reopened = 0
        self.answers: list[bytes] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _open(self, i: int) -> tuple[socket.socket, bytes, int]:
        s = socket.socket()
        s.bind((self.source, 0))
        s.settimeout(5)
        s.connect(("127.0.0.1", self.port))
        s.setblocking(False)
        if i % 2:
            payload = b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 10_000
        else:
            s.send(b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
            payload = b"1" * 100_000
        return s, payload, 0

    def start(self) -> "Slowloris":
        self.socks = [self._open(i) for i in range(self.count)]
        self.thread.start()
        return self

    def _run(self) -> None:
        while not self.stop.is_set():
            for i, (s, payload, sent) in enumerate(self.socks):
                try:
                    data = s.recv(65536)  # an answer (408) or a close (eviction) ends this connection
                    if data:
                        self.answers.append(data)
                    alive = False
                except BlockingIOError:
                    alive = True
                except OSError:
                    alive = False
                if alive:
                    try:
                        s.send(payload[sent:sent + 1])
                        self.socks[i] = (s, payload, sent + 1)
                        continue
                    except OSError:
                        pass
                s.close()
                if self.stop.is_set():
                    return
                try:
                    self.socks[i] = self._open(i)
                    self.reopened += 1
                except OSError:
                    pass
            self.stop.wait(0.2)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)
        for s, _, _ in self.socks:
            s.close()


@pytest.fixture(scope="module")
def flooded_server():
    server = Server()  # the defaults: 256 connections, 64 per client, 10 s header/body deadlines
    yield server
    err = server.stop()
    assert "Traceback" not in err, err


@pytest.mark.parametrize("source", ["127.0.0.1", "127.0.0.2"], ids=["same-address", "other-address"])
def test_300_slow_connections_do_not_fail_legitimate_requests(flooded_server, good, source):
    """The finding: 300 slowloris connections made every legitimate request get 503."""
    evicted_before = flooded_server.metric("edgeml_connections_evicted_total")
    attack = Slowloris(flooded_server.port, 300, source).start()
    try:
        statuses = _legit(flooded_server, good, 60)
        assert statuses == [200] * 120
        assert flooded_server.metric("edgeml_connections ") <= 256
        assert flooded_server.metric("edgeml_connections_evicted_total") - evicted_before >= 300 - 64
    finally:
        attack.close()
    assert flooded_server.get("/v2/health/ready")[0] == 200


@pytest.fixture(scope="module")
def impatient_server():
    server = Server("--header-timeout", "1", "--body-timeout", "1")
    yield server
    err = server.stop()
    assert "Traceback" not in err, err


def _dribble_until_answered(port: int, first: bytes, byte: bytes, seconds: float) -> tuple[bytes, float]:
    with socket.create_connection(("127.0.0.1", port), timeout=seconds) as s:
        start = time.monotonic()
        s.sendall(first)
        s.settimeout(0.2)
        received = b""
        while time.monotonic() - start < seconds:
            try:
                chunk = s.recv(65536)
                if not chunk:
                    break
                received += chunk
            except TimeoutError:
                try:
                    s.send(byte)
                except OSError:
                    break
        return received, time.monotonic() - start


@pytest.mark.parametrize("phase, first, byte", [
    ("header", b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\n", b"X"),
    ("body", b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{", b" "),
])
def test_a_client_dribbling_past_the_deadline_gets_408_json_and_is_closed(impatient_server, phase, first, byte):
    before = impatient_server.metric(f'edgeml_request_timeouts_total{{phase="{phase}"}}')
    received, took = _dribble_until_answered(impatient_server.port, first, byte, 20)
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), received[:200]
    assert b"Connection: close" in head and "did not arrive within" in json.loads(body)["error"]
    assert took < 10  # the deadline ended it, although a byte arrived every 0.2 s
    assert impatient_server.metric(f'edgeml_request_timeouts_total{{phase="{phase}"}}') == before + 1


# -- fuzzing: >= 10,000 bad bodies, zero 5xx -----------------------------------------------------------

_json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False),
                       st.text(max_size=8))
_json = st.recursive(_json_leaf, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
                     max_leaves=8)
_datatype = st.one_of(st.sampled_from(["FP32", "FP64", "FP16", "INT64", "INT8", "UINT8", "BOOL", "BYTES", "fp32", "FLOAT", ""]), _json)
_shape = st.one_of(
    st.just([0, N_FEATURES]), st.just([1, N_FEATURES]), st.just([2, N_FEATURES]), st.just([N_FEATURES]),
    st.lists(st.integers(-3, 2**64), max_size=4), st.lists(st.just(1), min_size=33, max_size=70), _json)
_data = st.one_of(
    st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=40),
    st.lists(st.lists(st.integers(-300, 300), max_size=17), max_size=3),
    st.lists(st.text(max_size=3), max_size=20), _json)
_params = st.one_of(st.none(), _json, st.fixed_dictionaries({"binary_data_size": st.one_of(st.integers(-5, 200), _json)}))


@st.composite
def _tensor(draw) -> dict:
    t = {"name": draw(st.sampled_from(["input", "input", "other", ""]) | _json), "shape": draw(_shape),
         "datatype": draw(_datatype), "data": draw(_data)}
    params = draw(_params)
    if params is not None:
        t["parameters"] = params
    for key in draw(st.sets(st.sampled_from(["name", "shape", "datatype", "data"]), max_size=2)):
        t.pop(key, None)
    return t


@st.composite
def _request(draw) -> tuple[bytes, dict[str, str]]:
    kind = draw(st.sampled_from(["structured", "structured", "structured", "json", "nested", "bytes", "binary"]))
    headers = {"Content-Type": draw(st.sampled_from(["application/json", "text/plain", "application/octet-stream",
                                                     "multipart/form-data; boundary=x", "", "application/json; charset=latin-1"]))}
    if kind == "nested":
        depth = draw(st.integers(50, 200_000))
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}"), ('{"inputs":[{"name":"input","shape":[1,16],"datatype":"FP32","data":', "}]}")]))
        if opener.startswith('{"inputs"'):
            body = (opener + "[" * depth + "1" + "]" * depth + closer).encode()
        else:
            body = (opener * depth + "1" + closer * depth).encode()
        return body, headers
    if kind == "bytes":
        return draw(st.binary(max_size=300)) + draw(st.sampled_from([b"", b"\xff\xfe", b'{"inputs": "\xc3\x28"}'])), headers
    if kind == "json":
        return json.dumps(draw(_json)).encode(), headers
    request: dict = {"inputs": draw(st.lists(_tensor(), max_size=3))}
    if draw(st.booleans()):
        request["outputs"] = draw(st.one_of(_json, st.lists(st.fixed_dictionaries(
            {"name": st.sampled_from(["label", "probabilities", "nope"]), "parameters": _json}), max_size=3)))
    if draw(st.booleans()):
        request["parameters"] = draw(st.one_of(_json, st.fixed_dictionaries({"binary_data_output": _json_leaf})))
    if draw(st.booleans()):
        request["id"] = draw(_json)
    head = json.dumps(request).encode()
    if kind == "binary":
        tail = draw(st.binary(max_size=300))
        length = draw(st.one_of(st.just(str(len(head))), st.integers(-5, len(head) + 400).map(str),
                                st.sampled_from(["", "abc", "1e3", " 12", "0x10"])))
        headers["Inference-Header-Content-Length"] = length
        return head + tail, headers
    return head, headers


@pytest.fixture(scope="module")
def fuzzed_server():
    server = Server()
    yield server
    err = server.stop()
    assert "Traceback" not in err and "internal error" not in err, err[-3000:]


def _variants(body: bytes, headers: dict[str, str], rnd) -> list[tuple[bytes, dict[str, str]]]:
    """The drawn request and 9 cheap mutations of it: cut short, bytes changed, a binary tail, doubled,
    other headers (hypothesis draws are slow; the server's answer to each variant is checked alike)."""
    def cut() -> bytes:
        return body[:rnd.randrange(len(body) + 1)]

    def flipped(n: int) -> bytes:
        out = bytearray(body or b"{")
        for _ in range(n):
            out[rnd.randrange(len(out))] = rnd.randrange(256)
        return bytes(out)

    binary = {**headers, "Inference-Header-Content-Length": str(len(body))}
    plain = {k: v for k, v in headers.items() if k != "Inference-Header-Content-Length"}
    return [(body, headers), (cut(), headers), (cut(), binary), (flipped(1), headers), (flipped(3), plain),
            (body + rnd.randbytes(rnd.randrange(64)), binary), (body, plain), (body + body, headers),
            (body, {**plain, "Content-Type": "application/x-www-form-urlencoded"}),
            (body[rnd.randrange(len(body) + 1):], headers)]


FUZZ_EXAMPLES = 1_000  # hypothesis draws; each is sent in 10 variants: 10,000 bodies


@pytest.mark.slow
def test_10000_fuzzed_infer_bodies_get_4xx_json_errors_never_5xx(fuzzed_server, good):
    """The finding: 2.6% of 9,000 fuzzed bad requests got 500 (empty batch, datatype {}, deep nesting)."""
    conn = [fuzzed_server.conn()]
    counts: dict[int, int] = {}

    def post(body: bytes, headers: dict[str, str]) -> None:
        c = conn[0]
        try:
            c.putrequest("POST", "/v2/models/mlp/infer", skip_accept_encoding=True)
            for k, v in {**headers, "Content-Length": str(len(body))}.items():
                c.putheader(k, v)
            c.endheaders(body)
            r = c.getresponse()
            payload = r.read()
        except (http.client.HTTPException, OSError):
            c.close()
            conn[0] = fuzzed_server.conn()
            raise
        counts[r.status] = counts.get(r.status, 0) + 1
        assert r.status < 500, (r.status, payload[:300], body[:300], headers)
        if r.status >= 400:
            assert r.getheader("Content-Type") == "application/json" and set(json.loads(payload)) == {"error"}
        if r.getheader("Connection", "").lower() == "close":
            c.close()
            conn[0] = fuzzed_server.conn()

    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(_request(), st.randoms(use_true_random=False))
    def send(request: tuple[bytes, dict[str, str]], rnd) -> None:
        for body, headers in _variants(*request, rnd):
            post(body, headers)

    send()
    conn[0].close()
    assert sum(counts.values()) >= 10_000
    assert sum(n for s, n in counts.items() if 400 <= s < 500) >= 9_000, counts
    # every one counted in /metrics, and the server still serves
    assert fuzzed_server.metric('edgeml_request_errors_total{endpoint="infer"') >= 9_000
    assert fuzzed_server.metric('edgeml_requests_total{endpoint="infer",code="5') == 0
    c = fuzzed_server.conn()
    c.request("POST", "/v2/models/mlp/infer", body=good, headers={"Content-Type": "application/json"})
    assert c.getresponse().status == 200


@pytest.mark.parametrize("body, message", [
    (b'{"inputs":[{"name":"input","shape":[0,16],"datatype":"FP32","data":[]}]}', "holds no elements"),
    (b'{"inputs":[{"name":"input","shape":[1,16],"datatype":{},"data":[]}]}', "unknown datatype {}"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b'{"inputs":[{"name":"input","shape":[1,16],"datatype":"FP32","data":' + b"[" * 5000 + b"]" * 5000 + b"}]}", "nested"),
    (b'{"inputs":[{"name":"input","shape":' + json.dumps([1] * 40).encode() + b',"datatype":"FP32","data":[1]}]}', "at most 32"),
    (b'\xff\xfe{"inputs": 1}', "not valid JSON"),
])
def test_the_bodies_that_got_500_before_get_400(fuzzed_server, body, message):
    c = fuzzed_server.conn()
    c.request("POST", "/v2/models/mlp/infer", body=body, headers={"Content-Type": "application/json"})
    r = c.getresponse()
    error = json.loads(r.read())["error"]
    assert r.status == 400 and message in error, error
    c.close()
