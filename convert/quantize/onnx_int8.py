"""int8 ONNX with onnxruntime.quantization: static QDQ for convolutional graphs, dynamic for MatMul graphs."""

from __future__ import annotations

import contextlib
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeml.errors import ConversionError, DataError, UnsupportedModelError, require

from ..onnx_utils import onnx_module, op_types, save
from ..options import CalibrationMethod, QuantMode, QuantOptions

CONV_OPS = {"Conv", "ConvTranspose"}
DYNAMIC_OPS = {"MatMul", "Gemm", "Attention", "LSTM", "GRU"}
MIN_CALIBRATION_SAMPLES = 16
# 7-bit weights. x86 CPUs without VNNI (AVX2-only, e.g. many AMD EPYC and older Intel parts) multiply
# uint8 x int8 pairs into saturating int16 (VPMADDUBSW); full-range weights overflow there and a tiny MLP's
# scores drift by 0.19 instead of 0.015. The artifact must hold on whatever CPU the device has, so the
# portable range is the default (onnxruntime.quantization's documented remedy); the cost on VNNI/Arm is
# one bit of weight resolution.
REDUCE_RANGE = True


@dataclass
class Int8Result:
    model: Any
    details: dict[str, Any]


def choose_mode(model: Any, requested: QuantMode) -> QuantMode:
    ops = op_types(model)
    if not ops & (CONV_OPS | DYNAMIC_OPS):
        raise UnsupportedModelError(
            "int8 would not change this model: it has no Conv, MatMul or Gemm to quantize "
            f"(operators: {', '.join(sorted(ops)[:8])}); drop int8 from --precision"
        )
    if requested != QuantMode.AUTO:
        return requested
    return QuantMode.STATIC if ops & CONV_OPS else QuantMode.DYNAMIC


class _Reader:
    """onnxruntime's CalibrationDataReader: one sample dict per get_next() call."""

    def __init__(self, feeds: dict[str, np.ndarray], batch: int = 1) -> None:
        n = len(next(iter(feeds.values())))
        self._batches = iter([{k: v[i:i + batch] for k, v in feeds.items()} for i in range(0, n, batch)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def quantize(model: Any, options: QuantOptions, calibration: dict[str, np.ndarray] | None) -> Int8Result:
    require("onnxruntime.quantization", "convert", "onnxruntime")
    from onnxruntime import quantization as q

    mode = choose_mode(model, options.mode)
    with tempfile.TemporaryDirectory() as tmp:
        src = save(model, Path(tmp) / "fp32.onnx")
        pre = Path(tmp) / "pre.onnx"
        try:
            # chdir: ORT's symbolic shape inference drops a temp file into the cwd when it gives up.
            with contextlib.chdir(tmp):
                q.shape_inference.quant_pre_process(str(src), str(pre), skip_symbolic_shape=False)
            preprocessed = True
        except Exception:  # pre-processing is an optimisation; some graphs defeat its shape inference
            pre, preprocessed = src, False
        out = Path(tmp) / "int8.onnx"
        details: dict[str, Any] = {"quantization": mode.value, "per_channel": options.per_channel, "preprocessed": preprocessed,
                                   "reduce_range": REDUCE_RANGE}
        logging.disable(logging.WARNING)  # ORT's root-logger advice ("consider pre-processing"): we already tried
        try:
            if mode == QuantMode.DYNAMIC:
                q.quantize_dynamic(str(pre), str(out), weight_type=q.QuantType.QInt8, per_channel=options.per_channel,
                                   reduce_range=REDUCE_RANGE)
            else:
                if calibration is None:
                    raise DataError("static int8 quantization of a convolutional graph needs --calibration FILE "
                                    "(.npz keyed by input name or .csv); or pass --quantization dynamic")
                n = len(next(iter(calibration.values())))
                if n < MIN_CALIBRATION_SAMPLES:
                    raise DataError(
                        f"static int8 quantization needs at least {MIN_CALIBRATION_SAMPLES} calibration samples "
                        f"(got {n}); pass --calibration FILE with more samples, or --quantization dynamic"
                    )
                method = {
                    CalibrationMethod.MINMAX: q.CalibrationMethod.MinMax,
                    CalibrationMethod.ENTROPY: q.CalibrationMethod.Entropy,
                    CalibrationMethod.PERCENTILE: q.CalibrationMethod.Percentile,
                }[options.calibration_method]
                q.quantize_static(
                    str(pre), str(out), _Reader(calibration), quant_format=q.QuantFormat.QDQ,
                    per_channel=options.per_channel, activation_type=q.QuantType.QUInt8,
                    weight_type=q.QuantType.QInt8, calibrate_method=method, reduce_range=REDUCE_RANGE,
                )
                details.update(calibration_method=options.calibration_method.value, calibration_samples=n,
                               activations="uint8", weights="int8", format="QDQ")
        except (DataError, UnsupportedModelError):
            raise
        except Exception as exc:
            raise ConversionError(f"onnxruntime int8 {mode.value} quantization failed: {str(exc).splitlines()[0][:300]}") from None
        finally:
            logging.disable(logging.NOTSET)
        return Int8Result(onnx_module().load_model(str(out)), details)
