"""Every backend, through `edgeml.runtime.load(..., backend=NAME)` and `edgeml serve --backend NAME`.

One bundle holds a tiny PyTorch MLP converted to onnx, tflite and openvino at fp32 (built once per
module). Each backend must reproduce the bundle's golden samples (the source model's outputs) within
the fp32 tolerance, in-process and over HTTP. A backend whose engine is not installed is skipped.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from runtime_fixtures import Client, infer_body, samples

pytestmark = pytest.mark.slow

BACKEND_FORMATS = {"onnxruntime": "onnx", "litert": "tflite", "openvino": "openvino"}
ATOL, RTOL = 1e-4, 1e-3  # the fp32 validation tolerance of `edgeml convert`


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    torch = pytest.importorskip("torch")
    from tiny_models import TinyMLP

    from edgeml.convert.options import ConvertOptions
    from edgeml.convert.pipeline import convert

    root = tmp_path_factory.mktemp("backends")
    torch.manual_seed(0)
    program = torch.export.export(TinyMLP(6, 3).eval(), (torch.randn(2, 6),),
                                  dynamic_shapes=({0: torch.export.Dim.DYNAMIC},))
    torch.export.save(program, str(root / "tiny.pt2"))
    np.savez(root / "cal.npz", input=np.random.default_rng(0).normal(size=(64, 6)).astype(np.float32))
    return convert(ConvertOptions(source=str(root / "tiny.pt2"), out=root / "tiny-1", name="tiny", version="1",
                                  formats=list(BACKEND_FORMATS.values()), calibration=root / "cal.npz",
                                  latency_runs=2)).bundle


def _require(backend: str) -> None:
    from edgeml.runtime.backends import get_backend

    if not get_backend(backend).available():
        pytest.skip(f"{backend} is not installed here (pip install 'edgeml[{backend}]')")


def _assert_matches_golden(outputs: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> None:
    assert set(outputs) == set(reference)
    for name, expected in reference.items():
        np.testing.assert_allclose(np.asarray(outputs[name]).reshape(expected.shape), expected, atol=ATOL, rtol=RTOL,
                                   err_msg=f"output {name!r}")


@pytest.mark.parametrize("backend", list(BACKEND_FORMATS))
def test_load_with_each_backend_predicts_the_golden_samples(bundle, backend):
    from edgeml.runtime import load

    _require(backend)
    model = load(bundle, backend=backend, precision="fp32", threads=1)
    assert (model.info.backend, model.info.format) == (backend, BACKEND_FORMATS[backend])
    inputs, reference = samples(bundle)
    _assert_matches_golden(model.predict(inputs), reference)
    # Batch sizes that change between calls (LiteRT resizes its input tensor) and one sample alone.
    (name, x), = inputs.items()
    for n in (1, len(x), 3, 1):
        _assert_matches_golden(model.predict({name: x[:n]}), {k: v[:n] for k, v in reference.items()})


def _served_url(proc: subprocess.Popen) -> str:
    """The URL from the daemon's start-up line (engines may log lines of their own before it)."""
    seen = []
    for _ in range(50):
        line = proc.stderr.readline().decode()
        seen.append(line)
        if " at http://" in line:
            return line.split(" at ")[1].split(";")[0]
        if not line:
            break
    raise AssertionError("edgeml serve did not start:\n" + "".join(seen))


@pytest.mark.parametrize("backend", list(BACKEND_FORMATS))
def test_serve_with_each_backend_answers_an_infer_over_http(bundle, backend):
    _require(backend)
    proc = subprocess.Popen([sys.executable, "-m", "edgeml", "serve", str(bundle), "--port", "0", "--backend", backend,
                             "--precision", "fp32", "--threads", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        client = Client(_served_url(proc))
        status, meta = client.get("/v2/models/tiny")
        assert status == 200 and meta["platform"] == f"{backend}_{BACKEND_FORMATS[backend]}"
        inputs, reference = samples(bundle)
        status, body = client.post("/v2/models/tiny/infer", infer_body(inputs))
        assert status == 200, body
        outputs = {o["name"]: np.asarray(o["data"], np.float32).reshape(o["shape"]) for o in body["outputs"]}
        _assert_matches_golden(outputs, reference)
        client.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        log = proc.stderr.read().decode(errors="replace")
        proc.stderr.close()
    assert code == 0, f"edgeml serve exited with {code}:\n{log}"
