"""OpenVINO backend: IR artifacts (model.xml + model.bin) on OpenVINO Runtime's CPU plugin.

The inference precision hint follows the artifact (f32 for fp32 and int8, f16 for fp16): on CPUs with
bf16 support OpenVINO otherwise runs in bf16 and fp32 parity is lost.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from edgeml.errors import BundleError, MissingDependencyError

from .base import BackendOptions

INFERENCE_PRECISION = {"fp32": "f32", "int8": "f32", "fp16": "f16"}
MODEL_FILE = "model.xml"


class OpenVINOSession:
    def __init__(self, path: Path, options: BackendOptions) -> None:
        import openvino as ov

        xml = path / MODEL_FILE if path.is_dir() else path
        config = {"INFERENCE_PRECISION_HINT": INFERENCE_PRECISION.get(options.precision, "f32"),
                  "PERFORMANCE_HINT": "LATENCY"}
        if options.threads:
            config["INFERENCE_NUM_THREADS"] = str(options.threads)
        try:
            core = ov.Core()
            self._compiled = core.compile_model(core.read_model(str(xml)), "CPU", config)
        except Exception as exc:  # OpenVINO raises RuntimeError for missing/corrupt IR
            raise BundleError(f"OpenVINO cannot load {xml}: {str(exc).strip().splitlines()[0][:300]}") from None
        self.input_names = [p.get_any_name() for p in self._compiled.inputs]
        self.output_names = [p.get_any_name() for p in self._compiled.outputs]
        self._request = self._compiled.create_infer_request()
        self._infer = self._request.infer
        self._inputs = list(enumerate(self.input_names))  # feed by port index: no name resolution per call
        self._outputs = list(zip(self.output_names, self._compiled.outputs))

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # share_outputs is off, so the result's arrays are already copies the caller may keep.
        result = self._infer({i: feeds[name] for i, name in self._inputs}, share_inputs=True)
        return {name: result[port] for name, port in self._outputs}


class OpenVINOBackend:
    name = "openvino"
    formats = ("openvino",)

    def available(self) -> bool:
        return importlib.util.find_spec("openvino") is not None

    def load(self, path: Path, options: BackendOptions) -> OpenVINOSession:
        if not self.available():
            raise MissingDependencyError("openvino", "openvino")
        return OpenVINOSession(Path(path), options)


BACKEND = OpenVINOBackend()
