"""ONNX Runtime backend (the base install): CPU, or another execution provider when present."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from edgeml.errors import BundleError, MissingDependencyError

from .base import BackendOptions

# Preferred providers, best first; only those this onnxruntime build offers are used.
PREFERRED_PROVIDERS = ["CUDAExecutionProvider", "CoreMLExecutionProvider", "CPUExecutionProvider"]


class OnnxRuntimeSession:
    def __init__(self, path: Path, options: BackendOptions) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if options.threads:
            so.intra_op_num_threads = options.threads
            so.inter_op_num_threads = 1
        so.log_severity_level = 3
        available = set(ort.get_available_providers())
        providers = [p for p in PREFERRED_PROVIDERS if p in available] or ["CPUExecutionProvider"]
        try:
            self._session = ort.InferenceSession(str(path), sess_options=so, providers=providers)
        except Exception as exc:  # ORT raises its own exception types for corrupt or unsupported graphs
            raise BundleError(f"onnxruntime cannot load {path.name}: {str(exc).splitlines()[0]}") from None
        self.input_names = [i.name for i in self._session.get_inputs()]
        self.output_names = [o.name for o in self._session.get_outputs()]
        self.providers = self._session.get_providers()

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self._session.run(self.output_names, feeds)
        return dict(zip(self.output_names, values))


class OnnxRuntimeBackend:
    name = "onnxruntime"
    formats = ("onnx",)

    def available(self) -> bool:
        return importlib.util.find_spec("onnxruntime") is not None

    def load(self, path: Path, options: BackendOptions) -> OnnxRuntimeSession:
        if not self.available():
            raise MissingDependencyError("onnxruntime", "onnxruntime")
        return OnnxRuntimeSession(Path(path), options)


BACKEND = OnnxRuntimeBackend()
