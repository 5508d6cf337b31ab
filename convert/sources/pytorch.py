"""PyTorch sources: ExportedProgram (.pt2), TorchScript (.pt/.pth/.ts), or `package.module:factory` + weights.

Export goes through torch.onnx (the dynamo exporter; TorchScript archives use the TorchScript exporter,
the only one that accepts them). The batch axis stays dynamic where the input spec marks it `?`.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import re
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from edgeml import dtypes
from edgeml.errors import ConversionError, SourceError, UsageError, require
from edgeml.hashing import sha256_file
from edgeml.schema import TensorSpec

from ..onnx_utils import onnx_module, schema_from_onnx
from ..options import ConvertOptions
from ..text import name_dims
from .base import SourceModel
from .tasks import guess_task

TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".ts", ".torchscript", ".jit")
FACTORY_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


class PyTorchLoader:
    name = "pytorch"
    description = "PyTorch ExportedProgram (.pt2), TorchScript (.pt/.pth/.ts), or package.module:factory with --weights"

    def matches(self, source: str) -> bool:
        lower = source.lower()
        if lower.endswith(".pt2") or lower.endswith(TORCHSCRIPT_SUFFIXES):
            return True
        return bool(FACTORY_RE.match(source)) and not Path(source).exists()

    def load(self, source: str, options: ConvertOptions) -> SourceModel:
        torch = require("torch", "torch", "torch (a CPU wheel; see the README)")
        if source.lower().endswith(".pt2"):
            module, specs, path, how = _load_exported(torch, source, options)
        elif FACTORY_RE.match(source) and not Path(source).exists():
            module, specs, path, how = _load_factory(torch, source, options)
        else:
            module, specs, path, how = _load_torchscript(torch, source, options)
        runner = module.module() if how == "exported_program" else module
        onnx_model = _export(torch, module, runner, specs, options.opset, scripted=(how == "torchscript"))
        schema = schema_from_onnx(onnx_model)
        for spec, onnx_spec in zip(specs, schema.inputs):
            onnx_spec.shape = [None if s is None else d for s, d in zip(spec.shape, onnx_spec.shape)] or onnx_spec.shape
        name_dims(schema, onnx_model)  # the exporter's dim_params (torch Dim symbols) as named dynamic axes
        task, score_output = guess_task(schema, options.task)
        output_names = [o.name for o in schema.outputs]
        return SourceModel(
            kind=self.name, framework="torch", framework_version=torch.__version__.split("+")[0],
            path=path, sha256=sha256_file(path) if path else None, onnx_model=onnx_model, schema=schema,
            task=task, reference=_reference(torch, runner, [s.name for s in schema.inputs], output_names),
            labels=options.labels, score_output=score_output, details={"pytorch_format": how},
            native=runner,  # the nn.Module, for exporters that convert straight from PyTorch (litert-torch)
        )


def _load_exported(torch: Any, source: str, options: ConvertOptions):
    path = _existing(source)
    if not zipfile.is_zipfile(path):
        raise SourceError(f"{path} is not a readable torch.export ExportedProgram: not a .pt2 archive (save one with torch.export.save)")
    logging.getLogger("torch.export").setLevel(logging.ERROR)  # it logs its own traceback before raising
    try:
        program = torch.export.load(str(path))
    except Exception as exc:  # torch raises many types for corrupt archives
        raise SourceError(f"{path} is not a readable torch.export ExportedProgram: {_first_line(exc)}") from None
    specs = options.inputs or _specs_from_program(program)
    return program, specs, path, "exported_program"


def _load_torchscript(torch: Any, source: str, options: ConvertOptions):
    path = _existing(source)
    try:
        module = torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as exc:
        raise SourceError(
            f"{path} is not a TorchScript archive ({_first_line(exc)}); for a state_dict pass "
            "package.module:factory as SOURCE with --weights FILE"
        ) from None
    if not options.inputs:
        raise UsageError("a TorchScript model does not record its input shapes; pass --input NAME:DTYPE:SHAPE, e.g. --input input:float32:?x1x8x8")
    return module, options.inputs, path, "torchscript"


def _load_factory(torch: Any, source: str, options: ConvertOptions):
    module_name, attr = source.split(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise SourceError(f"cannot import {source}: {exc}") from None
    try:
        module = factory()
    except Exception as exc:
        raise SourceError(f"{source}() failed: {_first_line(exc)}") from None
    if not isinstance(module, torch.nn.Module):
        raise SourceError(f"{source}() returned {type(module).__name__}, not a torch.nn.Module")
    if options.weights is not None:
        weights = _existing(str(options.weights))
        try:
            state = torch.load(str(weights), map_location="cpu", weights_only=True)
            module.load_state_dict(state)
        except Exception as exc:
            raise SourceError(f"cannot load weights {weights} into {source}(): {_first_line(exc)}") from None
    if not options.inputs:
        raise UsageError(f"pass the input shape of {source}() with --input NAME:DTYPE:SHAPE, e.g. --input input:float32:?x1x8x8")
    return module.eval(), options.inputs, options.weights, "factory"


def _specs_from_program(program: Any) -> list[TensorSpec]:
    user_inputs = set(program.graph_signature.user_inputs)
    specs = []
    for node in program.graph.nodes:
        if node.op != "placeholder" or node.name not in user_inputs:
            continue
        val = node.meta.get("val")
        if val is None or not hasattr(val, "shape"):
            raise UsageError(f"cannot read the shape of input {node.name}; pass --input NAME:DTYPE:SHAPE")
        shape = [int(d) if isinstance(d, int) or str(d).isdigit() else None for d in val.shape]
        specs.append(TensorSpec(node.name, str(val.dtype).replace("torch.", ""), shape))
    return specs


def _example(torch: Any, spec: TensorSpec) -> Any:
    shape = [2 if d is None else d for d in spec.shape]
    dt = dtypes.to_numpy(spec.dtype)
    if dt.kind == "f":
        return torch.from_numpy(np.random.default_rng(0).standard_normal(shape).astype(dt))
    return torch.zeros(shape, dtype=getattr(torch, dt.name))


def _export(torch: Any, module: Any, runner: Any, specs: list[TensorSpec], opset: int, scripted: bool) -> Any:
    onnx = onnx_module()
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # e.g. "torchvision is not installed" notices
    args = tuple(_example(torch, s) for s in specs)
    names = [s.name for s in specs]
    output_names = _output_names(torch, runner, args)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        out = Path(tmp) / "model.onnx"
        try:
            if scripted:
                axes = {s.name: {i: f"{s.name}_dim{i}" for i, d in enumerate(s.shape) if d is None} for s in specs}
                torch.onnx.export(module, args, str(out), input_names=names, output_names=output_names, dynamic_axes=axes,
                                  opset_version=opset, dynamo=False)
            else:
                dyn = tuple({i: torch.export.Dim.DYNAMIC for i, d in enumerate(s.shape) if d is None} for s in specs)
                program = torch.onnx.export(module, args, input_names=names, output_names=output_names, dynamic_shapes=dyn,
                                            opset_version=max(opset, 18), dynamo=True, verbose=False)
                program.save(str(out))
            model = onnx.load_model(str(out))
        except UsageError:
            raise
        except Exception as exc:
            raise ConversionError(f"torch.onnx.export failed: {_first_line(exc)}") from None
    return model


def _output_names(torch: Any, module: Any, args: tuple) -> list[str]:
    """Stable output names: `output` for one output, `output_0`, `output_1`, ... for several."""
    try:
        with torch.no_grad():
            out = module(*args)
    except Exception as exc:
        raise UsageError(f"the model does not accept inputs of the given shape ({_first_line(exc)}); check --input") from None
    n = len(out) if isinstance(out, (tuple, list)) else 1
    return ["output"] if n == 1 else [f"output_{i}" for i in range(n)]


def _reference(torch: Any, module: Any, input_names: list[str], output_names: list[str]):
    def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with torch.no_grad():
            out = module(*[torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in input_names])
        outs = out if isinstance(out, (tuple, list)) else (out,)
        return {n: o.detach().cpu().numpy() for n, o in zip(output_names, outs)}

    return run


def _existing(path_text: str) -> Path:
    path = Path(path_text)
    if not path.is_file():
        raise SourceError(f"source {path} not found")
    return path


def _first_line(exc: BaseException) -> str:
    """The gist of a framework error on one line: its first two non-empty lines."""
    text = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return (" ".join(text[:2]) if text else type(exc).__name__)[:300]


LOADER = PyTorchLoader()
