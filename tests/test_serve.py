"""The serving daemon over real HTTP on a free port: Open Inference Protocol, errors, metrics, swap."""

from __future__ import annotations

import re
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from edgeml.runtime import load
from edgeml.runtime.batching import BatchOptions
from edgeml.runtime.server import Daemon, ModelHolder, ServeConfig, ServerLimits
from runtime_fixtures import N_FEATURES, Client, bundles, copy_bundle, edit_manifest, infer_body, samples


@pytest.fixture(scope="module")
def mlp():
    return load(bundles().mlp, precision="fp32", threads=1)


@pytest.fixture(scope="module")
def tabular():
    return load(bundles().tabular, threads=1)


@pytest.fixture()
def serve():
    """Start a daemon on a free port with the given models' holder; stop it after the test."""
    started: list[Daemon] = []

    def start(model=None, **config) -> tuple[Daemon, Client]:
        daemon = Daemon(ServeConfig(port=0, **config))
        if model is not None:
            daemon.holder.swap(model)
        started.append(daemon.start())
        return daemon, Client(daemon.url)

    yield start
    for daemon in started:
        daemon.stop()


def _x(n: int = 3) -> np.ndarray:
    return samples(bundles().mlp)[0]["input"][:n]


# -- health and metadata -------------------------------------------------------------------------

def test_health_and_metadata_follow_the_protocol(serve, mlp):
    _, client = serve(mlp)
    assert client.get("/v2/health/live") == (200, {"live": True})
    assert client.get("/v2/health/ready") == (200, {"ready": True})
    status, meta = client.get("/v2")
    assert status == 200 and meta["name"] == "edgeml" and isinstance(meta["extensions"], list) and meta["version"]
    status, model = client.get("/v2/models/mlp")
    assert status == 200
    assert model == {
        "name": "mlp", "versions": ["1.0"], "platform": "onnxruntime_onnx",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, N_FEATURES]}],
        "outputs": [{"name": "label", "datatype": "INT64", "shape": [-1]},
                    {"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]}],
    }
    assert client.get("/v2/models/mlp/versions/1.0") == (200, model)
    assert client.get("/v2/models/mlp/ready") == (200, {"name": "mlp", "ready": True})
    assert client.get("/v2/models/mlp/versions/1.0/ready")[0] == 200


def test_daemon_without_a_model_is_live_but_not_ready(serve, mlp):
    daemon, client = serve(None)
    assert client.get("/v2/health/live") == (200, {"live": True})
    assert client.get("/v2/health/ready") == (400, {"ready": False})
    status, body = client.post("/v2/models/mlp/infer", infer_body({"input": _x(1)}))
    assert status == 404 and "no model is loaded" in body["error"]
    daemon.holder.swap(mlp)
    assert client.get("/v2/health/ready") == (200, {"ready": True})
    assert client.post("/v2/models/mlp/infer", infer_body({"input": _x(1)}))[0] == 200


# -- inference -----------------------------------------------------------------------------------

def test_infer_returns_row_major_outputs_and_echoes_the_id(serve, mlp):
    _, client = serve(mlp)
    x = _x(3)
    status, body = client.post("/v2/models/mlp/infer", infer_body({"input": x}, request_id="req-7"))
    assert status == 200
    assert body["model_name"] == "mlp" and body["model_version"] == "1.0" and body["id"] == "req-7"
    expected = mlp.predict(x)
    outputs = {o["name"]: o for o in body["outputs"]}
    assert outputs["label"]["datatype"] == "INT64" and outputs["label"]["shape"] == [3]
    assert outputs["label"]["data"] == expected["label"].tolist()
    assert outputs["probabilities"]["datatype"] == "FP32" and outputs["probabilities"]["shape"] == [3, 2]
    np.testing.assert_allclose(outputs["probabilities"]["data"], expected["probabilities"].reshape(-1), rtol=1e-6)


def test_infer_honours_requested_outputs_and_nested_data(serve, mlp):
    _, client = serve(mlp)
    x = _x(2)
    body = {"inputs": [{"name": "input", "shape": [2, N_FEATURES], "datatype": "FP64", "data": x.astype(float).tolist()}],
            "outputs": [{"name": "probabilities"}]}
    status, response = client.post("/v2/models/mlp/versions/1.0/infer", body)
    assert status == 200
    assert [o["name"] for o in response["outputs"]] == ["probabilities"]
    assert "id" not in response


def test_infer_with_a_bytes_input_for_a_string_column(serve, tabular):
    _, client = serve(tabular)
    inputs, reference = samples(bundles().tabular)
    body = infer_body(inputs)
    assert {t["name"]: t["datatype"] for t in body["inputs"]}["city"] == "BYTES"
    status, response = client.post("/v2/models/tabular/infer", body)
    assert status == 200, response
    label = next(o for o in response["outputs"] if o["name"] == "label")
    assert label["data"] == reference["label"].tolist()


# -- client mistakes: 4xx with {"error": ...}, the daemon keeps serving, /metrics counts them ------

BAD_REQUESTS = [
    ("malformed JSON", "/v2/models/mlp/infer", b'{"inputs": [', 400, "not valid JSON"),
    ("unknown model", "/v2/models/nope/infer", None, 404, "model 'nope' not found"),
    ("unknown version", "/v2/models/mlp/versions/9/infer", None, 404, "no version '9'"),
    ("missing input", "/v2/models/mlp/infer", {"inputs": [{"name": "other", "shape": [1], "datatype": "FP32", "data": [1]}]}, 400, "missing input(s) 'input'"),
    ("extra input", "/v2/models/mlp/infer", "extra", 400, "unknown input(s) 'more'"),
    ("wrong shape", "/v2/models/mlp/infer", {"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}, 400, "expects shape [?, 16]"),
    ("shape and data disagree", "/v2/models/mlp/infer", {"inputs": [{"name": "input", "shape": [1, 16], "datatype": "FP32", "data": [1, 2]}]}, 400, "holds 16 elements but data has 2"),
    ("wrong datatype", "/v2/models/mlp/infer", {"inputs": [{"name": "input", "shape": [1, 16], "datatype": "BYTES", "data": ["a"] * 16}]}, 400, "input 'input' expects float32: received BYTES data"),
    ("unknown datatype", "/v2/models/mlp/infer", {"inputs": [{"name": "input", "shape": [1, 16], "datatype": "FLOAT", "data": [0] * 16}]}, 400, "unknown datatype 'FLOAT'"),
    ("unknown output", "/v2/models/mlp/infer", "bad-output", 400, "unknown output(s) 'scores'"),
    ("no inputs", "/v2/models/mlp/infer", {"id": "x"}, 400, "non-empty \"inputs\""),
]


@pytest.mark.parametrize("what,path,payload,status,message", BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_requests_get_4xx_json_errors_and_the_daemon_keeps_serving(serve, mlp, what, path, payload, status, message):
    daemon, client = serve(mlp)
    good = infer_body({"input": _x(1)})
    if payload == "extra":
        payload = {"inputs": good["inputs"] + [{"name": "more", "shape": [1], "datatype": "FP32", "data": [1]}]}
    elif payload == "bad-output":
        payload = {**good, "outputs": [{"name": "scores"}]}
    elif payload is None:
        payload = good
    raw = payload if isinstance(payload, bytes) else None
    got_status, body = client.post(path, None if raw else payload, raw=raw)
    assert got_status == status
    assert set(body) == {"error"} and message in body["error"]
    assert client.post("/v2/models/mlp/infer", good)[0] == 200  # same connection, still serving
    assert daemon.metrics.errors.value(endpoint="infer", reason="bad_request" if status == 400 else "not_found") == 1


def test_oversized_body_is_413_and_wrong_method_405(serve, mlp):
    _, client = serve(mlp, limits=ServerLimits(max_body_bytes=1000))
    big = infer_body({"input": np.zeros((50, N_FEATURES), np.float32)})
    status, body = client.post("/v2/models/mlp/infer", big)
    assert status == 413 and "exceeds the limit of 1000 bytes" in body["error"]
    status, body = client.get("/v2/models/mlp/infer")
    assert status == 405 and "POST" in body["error"]
    status, body = client.get("/v3/anything")
    assert status == 404 and "error" in body
    assert client.post("/v2/models/mlp/infer", infer_body({"input": _x(1)}))[0] == 200


def test_requests_beyond_the_inflight_limit_get_429(serve, mlp):
    daemon, client = serve(mlp, limits=ServerLimits(max_inflight=1))
    daemon.state.slots.acquire()  # one inference "in flight"
    try:
        status, body = client.post("/v2/models/mlp/infer", infer_body({"input": _x(1)}))
    finally:
        daemon.state.slots.release()
    assert status == 429 and "busy" in body["error"]
    assert client.post("/v2/models/mlp/infer", infer_body({"input": _x(1)}))[0] == 200


class _BlockingObserver:
    """Telemetry observer that holds a request inside the model run until released."""

    def __init__(self) -> None:
        self.entered, self.release = threading.Event(), threading.Event()

    def observe(self, *_args) -> None:
        self.entered.set()
        self.release.wait(30)

    def error(self, *_args) -> None:
        pass


def test_a_new_connection_evicts_the_oldest_idle_one_and_gets_503_only_when_all_are_busy(serve, mlp):
    daemon, first = serve(mlp, limits=ServerLimits(max_connections=1))
    assert first.get("/v2/health/live")[0] == 200  # holds the only connection (idle keep-alive)
    second = Client(daemon.url)
    assert second.get("/v2/health/live") == (200, {"live": True})  # the idle one made room
    assert daemon.metrics.evictions.value(why="server_full") == 1
    blocker = daemon.state.observer = _BlockingObserver()
    with ThreadPoolExecutor(1) as pool:
        busy = pool.submit(second.post, "/v2/models/mlp/infer", infer_body({"input": _x(1)}))
        assert blocker.entered.wait(30)
        third = Client(daemon.url)
        status, body = third.get("/v2/health/live")
        assert status == 503 and "too many connections" in body["error"]
        blocker.release.set()
        assert busy.result(timeout=30)[0] == 200  # the busy request was not cut off
    third.close()
    second.close()
    first.close()


# -- metrics -------------------------------------------------------------------------------------

def test_metrics_are_prometheus_text_with_counts_errors_latency_and_model_info(serve, mlp):
    _, client = serve(mlp)
    for _ in range(3):
        assert client.post("/v2/models/mlp/infer", infer_body({"input": _x(1)}))[0] == 200
    assert client.post("/v2/models/mlp/infer", raw=b"nope")[0] == 400
    status, text = client.get("/metrics")
    assert status == 200
    lines = text.splitlines()
    assert 'edgeml_requests_total{endpoint="infer",code="200"} 3' in lines
    assert 'edgeml_requests_total{endpoint="infer",code="400"} 1' in lines
    assert 'edgeml_request_errors_total{endpoint="infer",reason="bad_request"} 1' in lines
    assert "# TYPE edgeml_request_duration_seconds histogram" in lines
    assert 'edgeml_request_duration_seconds_count{endpoint="infer"} 4' in lines
    assert 'edgeml_request_duration_seconds_bucket{endpoint="infer",le="+Inf"} 4' in lines
    assert 'edgeml_model_info{model="mlp",version="1.0",backend="onnxruntime",format="onnx",precision="fp32"} 1' in lines
    assert "edgeml_model_ready 1" in lines


# -- swap, batching, unix socket -----------------------------------------------------------------

def test_swap_under_concurrent_requests_fails_no_request(serve, mlp, tmp_path):
    v2_bundle = copy_bundle(bundles().mlp, tmp_path, "mlp-2.0")
    edit_manifest(v2_bundle, lambda m: m.update(version="2.0"))
    v2 = load(v2_bundle, precision="fp32", threads=1)
    daemon, _ = serve(mlp)
    body = infer_body({"input": _x(2)})
    stop = threading.Event()

    def hammer() -> tuple[list[int], set[str]]:
        client, statuses, versions = Client(daemon.url), [], set()
        while not stop.is_set():
            status, response = client.post("/v2/models/mlp/infer", body)
            statuses.append(status)
            versions.add(response.get("model_version", "?"))
        client.close()
        return statuses, versions

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(hammer) for _ in range(4)]
        for i in range(30):
            daemon.holder.swap(v2 if i % 2 == 0 else mlp)
        stop.set()
        results = [f.result(timeout=30) for f in futures]
    statuses = [s for r in results for s in r[0]]
    assert statuses and set(statuses) == {200}
    assert set().union(*(r[1] for r in results)) <= {"1.0", "2.0"}
    assert daemon.metrics.swaps.value() == 31


def test_micro_batching_gives_each_caller_its_own_rows(serve):
    model = load(bundles().mlp, precision="fp32", threads=1)
    daemon, _ = serve(model, batch=BatchOptions(max_batch=16, max_delay_ms=5))
    x = samples(bundles().mlp)[0]["input"]

    def one(i: int) -> tuple[int, list]:
        client = Client(daemon.url)
        status, response = client.post("/v2/models/mlp/infer", infer_body({"input": x[i:i + 1]}, outputs=["probabilities"]))
        client.close()
        return i, response["outputs"][0]["data"] if status == 200 else response

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(len(x))))
    expected = model.predict(x)["probabilities"]
    for i, data in results:
        np.testing.assert_allclose(data, expected[i], rtol=1e-5)


def test_micro_batching_is_refused_for_a_fixed_batch_model(tmp_path):
    from edgeml.errors import UsageError

    bundle = copy_bundle(bundles().mlp, tmp_path)
    edit_manifest(bundle, lambda m: m["inputs"][0].update(shape=[1, N_FEATURES]))
    holder = ModelHolder(BatchOptions(max_batch=4))
    with pytest.raises(UsageError, match="dynamic batch axis"):
        holder.swap(load(bundle, precision="fp32"))


def test_serves_on_a_unix_socket(serve, mlp, tmp_path):
    path = tmp_path / "edgeml.sock"
    daemon, client = serve(mlp, unix_socket=str(path))
    assert daemon.url == f"unix:{path}"
    assert client.get("/v2/health/ready") == (200, {"ready": True})
    assert client.post("/v2/models/mlp/infer", infer_body({"input": _x(1)}))[0] == 200
    client.close()
    daemon.stop()
    assert not path.exists()


# -- HTTP request parsing (the daemon's own lean parser) -----------------------------------------

def _raw_exchange(url: str, data: bytes) -> tuple[list[bytes], bool]:
    """Send raw bytes; return every response received (status lines) and whether the server closed."""
    import socket

    host, port = url[len("http://"):].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(data)
        received, closed = b"", False
        sock.settimeout(0.5)
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    closed = True
                    break
                received += chunk
        except TimeoutError:
            pass
    return re.findall(rb"HTTP/1\.[01] \d{3} [A-Za-z -]+", received), closed


def _post(body: bytes, *headers: str, version: str = "HTTP/1.1") -> bytes:
    head = [f"POST /v2/models/mlp/infer {version}", "Host: x", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def test_header_names_in_any_case_and_keep_alive_until_connection_close(serve, mlp):
    import json

    daemon, _ = serve(mlp)
    body = json.dumps(infer_body({"input": _x(1)})).encode()
    first = _post(body, f"content-LENGTH: {len(body)}", "CONTENT-TYPE: application/json")
    last = _post(body, f"Content-Length: {len(body)}", "connection: Close")
    statuses, closed = _raw_exchange(daemon.url, first + first + last)
    assert [s.split()[1] for s in statuses] == [b"200", b"200", b"200"] and closed


def test_http_1_0_is_answered_then_closed(serve, mlp):
    daemon, _ = serve(mlp)
    statuses, closed = _raw_exchange(daemon.url, b"GET /v2/health/live HTTP/1.0\r\n\r\n")
    assert statuses == [b"HTTP/1.1 200 OK"] and closed


@pytest.mark.parametrize("headers, status", [
    (("Content-Length: 2", "Content-Length: 3"), b"400"),  # conflicting lengths: request smuggling
    (("no colon here",), b"400"),
    ((" folded: continuation",), b"400"),
    (tuple(f"X-H{i}: v" for i in range(150)), b"431"),
])
def test_malformed_request_heads_get_a_4xx_and_the_connection_closes(serve, mlp, headers, status):
    daemon, client = serve(mlp)
    statuses, closed = _raw_exchange(daemon.url, _post(b"{}", *headers))
    assert [s.split()[1] for s in statuses] == [status] and closed
    assert client.get("/v2/health/live") == (200, {"live": True})


# -- the binary tensor data extension (as Triton/KServe clients send it) -------------------------

def _binary_post(client: Client, path: str, head: dict, tail: bytes, header_length: int | None = None):
    import json

    js = json.dumps(head).encode()
    length = len(js) if header_length is None else header_length
    client.conn.request("POST", path, body=js + tail, headers={"Inference-Header-Content-Length": str(length),
                                                                "Content-Type": "application/octet-stream"})
    r = client.conn.getresponse()
    payload = r.read()
    n = r.getheader("Inference-Header-Content-Length")
    if n is None:
        return r.status, json.loads(payload), b""
    return r.status, json.loads(payload[:int(n)]), payload[int(n):]


def test_tritonclient_infers_with_binary_inputs_and_outputs(serve, mlp):
    httpclient = pytest.importorskip("tritonclient.http")
    daemon, _ = serve(mlp)
    client = httpclient.InferenceServerClient(daemon.url[len("http://"):])
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    x = _x(3)
    tensor = httpclient.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=True)
    expected = mlp.predict(x)
    result = client.infer("mlp", [tensor])  # the client's default: every output in binary
    assert all("data" not in o and o["parameters"]["binary_data_size"] > 0 for o in result.get_response()["outputs"])
    np.testing.assert_array_equal(result.as_numpy("label"), expected["label"])
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected["probabilities"], rtol=1e-6)
    mixed = client.infer("mlp", [tensor], outputs=[httpclient.InferRequestedOutput("probabilities", binary_data=False),
                                                   httpclient.InferRequestedOutput("label", binary_data=True)])
    np.testing.assert_array_equal(mixed.as_numpy("label"), expected["label"])
    np.testing.assert_allclose(mixed.as_numpy("probabilities"), expected["probabilities"], rtol=1e-6)
    assert "data" in mixed.get_output("probabilities") and "data" not in mixed.get_output("label")
    client.close()


def test_tritonclient_sends_bytes_tensors_for_string_columns(serve, tabular):
    httpclient = pytest.importorskip("tritonclient.http")
    daemon, _ = serve(tabular)
    client = httpclient.InferenceServerClient(daemon.url[len("http://"):])
    inputs, reference = samples(bundles().tabular)
    tensors = []
    for name, value in inputs.items():
        is_text = value.dtype.kind in "USO"
        t = httpclient.InferInput(name, list(value.shape), "BYTES" if is_text else httpclient.np_to_triton_dtype(value.dtype))
        t.set_data_from_numpy(value.astype(object) if is_text else value, binary_data=True)
        tensors.append(t)
    result = client.infer("tabular", tensors)
    np.testing.assert_array_equal(result.as_numpy("label"), reference["label"])
    client.close()


def test_binary_request_by_hand_mixes_json_and_binary_inputs(serve, tabular):
    import struct

    _, client = serve(tabular)
    inputs, reference = samples(bundles().tabular)
    head, tail = {"inputs": [], "outputs": [{"name": "label", "parameters": {"binary_data": True}}]}, b""
    for name, value in inputs.items():
        if value.dtype.kind in "USO":  # BYTES: each element a 4-byte little-endian length, then its bytes
            blob = b"".join(struct.pack("<I", len(s.encode())) + s.encode() for s in value.reshape(-1).tolist())
            head["inputs"].append({"name": name, "shape": list(value.shape), "datatype": "BYTES",
                                   "parameters": {"binary_data_size": len(blob)}})
            tail += blob
        else:  # JSON data beside the binary input
            head["inputs"].append(infer_body({name: value})["inputs"][0])
    status, response, data = _binary_post(client, "/v2/models/tabular/infer", head, tail)
    assert status == 200, response
    label = next(o for o in response["outputs"] if o["name"] == "label")
    assert label["datatype"] == "INT64" and label["parameters"] == {"binary_data_size": len(data)}
    np.testing.assert_array_equal(np.frombuffer(data, "<i8"), reference["label"])


@pytest.mark.parametrize("size_delta, header_delta, tail_extra, message", [
    (-4, 0, b"", "binary_data_size is 60 bytes but shape [1, 16] of FP32 takes 64"),
    (0, 0, b"xx", "2 bytes after the JSON header belong to no input"),
    (0, 10_000, b"", "but the body has only"),
    (4, 0, b"", "runs past the end of the body"),
])
def test_malformed_binary_requests_get_400(serve, mlp, size_delta, header_delta, tail_extra, message):
    import json

    _, client = serve(mlp)
    x = _x(1).astype("<f4")
    head = {"inputs": [{"name": "input", "shape": [1, 16], "datatype": "FP32",
                        "parameters": {"binary_data_size": x.nbytes + size_delta}}]}
    status, body, _ = _binary_post(client, "/v2/models/mlp/infer", head, x.tobytes() + tail_extra,
                                   len(json.dumps(head).encode()) + header_delta)
    assert status == 400 and message in body["error"], body
    assert client.post("/v2/models/mlp/infer", infer_body({"input": _x(1)}))[0] == 200


def test_binary_size_without_the_header_is_refused(serve, mlp):
    _, client = serve(mlp)
    body = {"inputs": [{"name": "input", "shape": [1, 16], "datatype": "FP32", "parameters": {"binary_data_size": 64}}]}
    status, response = client.post("/v2/models/mlp/infer", body)
    assert status == 400 and "no Inference-Header-Content-Length header" in response["error"]


def test_bytes_and_bool_tensors_round_trip_through_the_binary_encoding():
    from edgeml.runtime.server import binary

    text = np.array([["héllo", ""], ["a", "zz"]])
    raw = binary.tensor_bytes(text)
    assert raw[:4] == (6).to_bytes(4, "little") and len(raw) == 4 * 4 + 6 + 0 + 1 + 2
    np.testing.assert_array_equal(binary.decode("t", [2, 2], "BYTES", memoryview(raw)), text)
    flags = np.array([True, False, True])
    assert binary.tensor_bytes(flags) == b"\x01\x00\x01"
    np.testing.assert_array_equal(binary.decode("b", [3], "BOOL", memoryview(b"\x01\x00\x01")), flags)
    with pytest.raises(binary.RequestError, match="BOOL elements must be bytes 0 or 1"):
        binary.decode("b", [1], "BOOL", memoryview(b"\x02"))
    half = np.array([1.5, -2.0], np.float16)
    np.testing.assert_array_equal(binary.decode("h", [2], "FP16", memoryview(binary.tensor_bytes(half))), half)
