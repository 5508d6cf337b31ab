"""The prediction cache (`edgeml serve --cache N`, issue 16): LRU of outputs keyed by decoded inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeml.runtime import load
from edgeml.runtime.server import Daemon, ServeConfig
from runtime_fixtures import Client, bundles, copy_bundle, edit_manifest, infer_body, samples


@pytest.fixture(scope="module")
def mlp():
    return load(bundles().mlp, precision="fp32", threads=1)


@pytest.fixture()
def serve():
    started: list[Daemon] = []

    def start(model, **config) -> tuple[Daemon, Client]:
        daemon = Daemon(ServeConfig(port=0, **config))
        daemon.holder.swap(model)
        started.append(daemon.start())
        return daemon, Client(daemon.url)

    yield start
    for daemon in started:
        daemon.stop()


class Counting:
    """How often the model really ran: edgeml_inference_duration_seconds counts model runs only."""

    def __init__(self, daemon) -> None:
        self.metrics, self.start = daemon.metrics, daemon.metrics.inference.count()

    @property
    def runs(self) -> int:
        return self.metrics.inference.count() - self.start


def _x(i: int, n: int = 2) -> np.ndarray:
    return samples(bundles().mlp)[0]["input"][i:i + n]


def _raw(client: Client, body: dict) -> tuple[int, bytes]:
    client.conn.request("POST", "/v2/models/mlp/infer", body=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    r = client.conn.getresponse()
    return r.status, r.read()


def test_a_hit_returns_exactly_what_the_miss_returned_without_running_the_model(serve, mlp):
    daemon, client = serve(mlp, cache_size=8)
    runs = Counting(daemon)
    body = infer_body({"input": _x(0)}, request_id="a")
    miss = _raw(client, body)
    hit = _raw(client, body)
    assert miss[0] == 200 and hit == miss
    assert runs.runs == 1
    # the same tensors spelled differently (FP64 nested data) are the same key after the cast
    other = {"id": "a", "inputs": [{"name": "input", "shape": [2, 16], "datatype": "FP64",
                                   "data": _x(0).astype(np.float64).tolist()}]}
    assert _raw(client, other) == miss and runs.runs == 1
    # another input misses
    assert _raw(client, infer_body({"input": _x(5)}))[0] == 200 and runs.runs == 2
    assert daemon.holder.cache_stats().hits == 2 and daemon.holder.cache_stats().misses == 2
    status, text = client.get("/metrics")
    lines = text.splitlines()
    assert "edgeml_cache_hits_total 2" in lines and "edgeml_cache_misses_total 2" in lines
    assert "edgeml_cache_entries 2" in lines and "edgeml_cache_capacity 8" in lines


def test_a_hit_serves_any_subset_of_outputs_and_the_binary_form(serve, mlp):
    daemon, client = serve(mlp, cache_size=8)
    runs = Counting(daemon)
    x = _x(3)
    full = _raw(client, infer_body({"input": x}))
    assert full[0] == 200 and runs.runs == 1
    status, only = _raw(client, infer_body({"input": x}, outputs=["probabilities"]))
    assert status == 200 and runs.runs == 1
    assert json.loads(only)["outputs"] == [o for o in json.loads(full[1])["outputs"] if o["name"] == "probabilities"]
    head = json.dumps({"inputs": [{"name": "input", "shape": [2, 16], "datatype": "FP32",
                                   "parameters": {"binary_data_size": x.nbytes}}],
                       "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}]}).encode()
    client.conn.request("POST", "/v2/models/mlp/infer", body=head + x.astype("<f4").tobytes(),
                        headers={"Inference-Header-Content-Length": str(len(head))})
    r = client.conn.getresponse()
    payload = r.read()
    n = int(r.getheader("Inference-Header-Content-Length"))
    probs = np.frombuffer(payload[n:], "<f4").reshape(2, 2)
    np.testing.assert_array_equal(probs, np.asarray(json.loads(only)["outputs"][0]["data"], np.float32).reshape(2, 2))
    assert runs.runs == 1


def test_least_recently_used_entries_go_first(serve, mlp):
    daemon, client = serve(mlp, cache_size=2)
    runs = Counting(daemon)
    a, b, c = (infer_body({"input": _x(i)}) for i in (0, 4, 8))
    for body in (a, b, a, c):  # c evicts b (a was used more recently)
        assert _raw(client, body)[0] == 200
    assert runs.runs == 3
    assert _raw(client, a)[0] == 200 and runs.runs == 3  # still cached
    assert _raw(client, b)[0] == 200 and runs.runs == 4  # evicted
    assert daemon.holder.cache_stats().entries == 2


def test_a_model_swap_empties_the_cache(serve, mlp, tmp_path):
    v2_bundle = copy_bundle(bundles().mlp, tmp_path, "mlp-2.0")
    edit_manifest(v2_bundle, lambda m: m.update(version="2.0"))
    v2 = load(v2_bundle, precision="fp32", threads=1)
    daemon, client = serve(mlp, cache_size=8)
    body = infer_body({"input": _x(0)})
    _raw(client, body)
    _raw(client, body)
    assert daemon.holder.cache_stats().hits == 1
    daemon.holder.swap(v2)
    assert daemon.holder.cache_stats().entries == 0
    runs = Counting(daemon)
    status, payload = _raw(client, body)
    assert status == 200 and json.loads(payload)["model_version"] == "2.0" and runs.runs == 1
    assert daemon.holder.cache_stats().misses == 2


def test_the_cache_is_off_by_default(serve, mlp):
    daemon, client = serve(mlp)
    runs = Counting(daemon)
    body = infer_body({"input": _x(0)})
    assert _raw(client, body) == _raw(client, body)
    assert runs.runs == 2 and daemon.holder.cache_stats() is None
    assert "edgeml_cache_hits_total 0" in client.get("/metrics")[1].splitlines()


def test_string_inputs_are_keyed_by_their_text(serve):
    tabular = load(bundles().tabular, threads=1)
    daemon, client = serve(tabular, cache_size=8)
    runs = Counting(daemon)
    inputs, _ = samples(bundles().tabular)
    first = client.post("/v2/models/tabular/infer", infer_body(inputs))
    again = client.post("/v2/models/tabular/infer", infer_body(inputs))
    assert first == again and first[0] == 200 and runs.runs == 1
    changed = dict(inputs, city=np.array(["oslo" if c != "oslo" else "rome" for c in inputs["city"]]))
    assert client.post("/v2/models/tabular/infer", infer_body(changed))[0] == 200 and runs.runs == 2


def test_edgeml_serve_cache_option_on_the_real_daemon():
    import subprocess
    import sys

    from fleet_fixtures import free_port, wait_until

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "edgeml", "serve", str(bundles().mlp), "--port", str(port),
                             "--precision", "fp32", "--cache", "4"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: Client(url).get("/v2/health/ready")[0] == 200, 60, "edgeml serve --cache to be ready")
        client = Client(url)
        body = infer_body({"input": _x(0)})
        assert _raw(client, body) == _raw(client, body)
        lines = client.get("/metrics")[1].splitlines()
        assert "edgeml_cache_hits_total 1" in lines and "edgeml_cache_misses_total 1" in lines
        assert "edgeml_cache_capacity 4" in lines
        client.close()
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert b"prediction cache of 4" in err


def test_telemetry_carries_the_cache_counters_since_the_previous_message(serve, mlp):
    """The agent's recorder, fed the real server's cache: each message counts the hits and misses of its
    own interval; a cache that is off sends nothing (the end-to-end path is in test_fleet_capture.py)."""
    from edgeml.messages import Telemetry
    from edgeml.runtime.agent.telemetry import TelemetryRecorder

    daemon, client = serve(mlp, cache_size=4)
    recorder = TelemetryRecorder()
    body = infer_body({"input": _x(0)})
    for _ in range(3):
        assert _raw(client, body)[0] == 200
    first = Telemetry.parse(recorder.collect(mlp, cache=daemon.holder.cache_stats()).to_json())
    assert first.cache.to_dict() == {"hits": 2, "misses": 1, "entries": 1, "capacity": 4}
    assert _raw(client, body)[0] == 200 and _raw(client, infer_body({"input": _x(2)}))[0] == 200
    second = recorder.collect(mlp, cache=daemon.holder.cache_stats())
    assert second.cache.to_dict() == {"hits": 1, "misses": 1, "entries": 2, "capacity": 4}
    assert recorder.collect(mlp, cache=None).cache is None and "cache" not in recorder.collect(mlp).to_dict()


def test_telemetry_carries_capture_counts_while_capture_applies():
    from edgeml.runtime.agent.telemetry import TelemetryRecorder

    recorder = TelemetryRecorder()
    counts = {"written": 5, "uploaded": 3, "dropped": 0}
    assert recorder.collect(None, capture=counts, capturing=True).capture.to_dict() == \
        {"captured": 5, "uploaded": 3, "dropped": 0}
    assert recorder.collect(None, capture=counts, capturing=True).capture.to_dict() == \
        {"captured": 0, "uploaded": 0, "dropped": 0}  # nothing new, still reported while capturing
    assert recorder.collect(None, capture={**counts, "uploaded": 5}, capturing=False).capture.uploaded == 2
    assert recorder.collect(None, capture={**counts, "uploaded": 5}, capturing=False).capture is None  # off, idle
