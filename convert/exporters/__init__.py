"""Exporter registry: target format name -> module defining EXPORTER. Drives --to, its help and the docs table."""

from __future__ import annotations

import importlib

from edgeml.errors import UsageError

from .base import ExportContext, ExportedArtifact, Exporter

EXPORTER_MODULES: dict[str, str] = {
    "onnx": "edgeml.convert.exporters.onnx",
    "tflite": "edgeml.convert.exporters.tflite",
    "openvino": "edgeml.convert.exporters.openvino",
}


def format_names() -> list[str]:
    return list(EXPORTER_MODULES)


def get_exporter(name: str) -> Exporter:
    if name not in EXPORTER_MODULES:
        raise UsageError(f"unknown format {name!r}; supported formats: {', '.join(EXPORTER_MODULES)}")
    return importlib.import_module(EXPORTER_MODULES[name]).EXPORTER


__all__ = ["ExportContext", "ExportedArtifact", "Exporter", "format_names", "get_exporter", "EXPORTER_MODULES"]
