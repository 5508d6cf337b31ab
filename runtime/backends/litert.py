"""LiteRT backend: `.tflite` artifacts on the ai-edge-litert interpreter (tflite_runtime as fallback).

Never imports tensorflow. Tensors are addressed through the model's `serving_default` signature, so
inputs and outputs keep the schema's names; a dynamic batch axis is resized only when it changes.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from edgeml.errors import BundleError, MissingDependencyError

from .base import BackendOptions

INTERPRETER_MODULES = ("ai_edge_litert.interpreter", "tflite_runtime.interpreter")


def _interpreter_class() -> Any:
    for name in INTERPRETER_MODULES:
        if importlib.util.find_spec(name.split(".")[0]) is not None:
            return importlib.import_module(name).Interpreter
    raise MissingDependencyError("ai-edge-litert", "litert")


class LiteRTSession:
    def __init__(self, path: Path, options: BackendOptions) -> None:
        interpreter_cls = _interpreter_class()
        try:
            self._it = interpreter_cls(model_path=str(path), num_threads=options.threads or None)
        except Exception as exc:  # the interpreter raises ValueError/RuntimeError for bad flatbuffers
            raise BundleError(f"LiteRT cannot load {path.name}: {str(exc).splitlines()[0]}") from None
        self._it.allocate_tensors()
        signatures = self._it.get_signature_list()
        if signatures:
            runner = self._it.get_signature_runner(next(iter(signatures)))
            self._inputs = {n: d["index"] for n, d in runner.get_input_details().items()}
            self._outputs = {n: d["index"] for n, d in runner.get_output_details().items()}
            del runner  # it holds views into the interpreter, which would block resizing
        else:  # a flatbuffer without signatures: the interpreter's own tensor names
            self._inputs = {d["name"]: d["index"] for d in self._it.get_input_details()}
            self._outputs = {d["name"]: d["index"] for d in self._it.get_output_details()}
        self.input_names = list(self._inputs)
        self.output_names = list(self._outputs)
        self._shapes = {n: tuple(self._tensor_shape(i)) for n, i in self._inputs.items()}
        self._input_names = tuple(self._inputs)
        self._input_items = tuple(self._inputs.items())
        self._output_items = tuple(self._outputs.items())

    def _tensor_shape(self, index: int) -> list[int]:
        for d in self._it.get_input_details():
            if d["index"] == index:
                return list(d["shape"])
        return []

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        shapes, it = self._shapes, self._it
        if any(feeds[name].shape != shapes[name] for name in self._input_names):
            self._resize(feeds)
        for name, index in self._input_items:
            arr = feeds[name]
            it.set_tensor(index, arr if arr.flags.c_contiguous else np.ascontiguousarray(arr))
        it.invoke()
        get = it.get_tensor
        return {name: get(index) for name, index in self._output_items}

    def _resize(self, feeds: dict[str, np.ndarray]) -> None:
        for name, index in self._input_items:
            shape = feeds[name].shape
            if shape != self._shapes[name]:
                self._it.resize_tensor_input(index, list(shape), strict=True)
                self._shapes[name] = shape
        self._it.allocate_tensors()


class LiteRTBackend:
    name = "litert"
    formats = ("tflite",)

    def available(self) -> bool:
        return any(importlib.util.find_spec(m.split(".")[0]) is not None for m in INTERPRETER_MODULES)

    def load(self, path: Path, options: BackendOptions) -> LiteRTSession:
        return LiteRTSession(Path(path), options)


BACKEND = LiteRTBackend()
