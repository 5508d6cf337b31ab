"""`edgeml convert` end to end: load the source, export every (format, precision), validate each
artifact on the backend that will run it, and commit a signed bundle atomically."""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from edgeml import signing
from edgeml.bundle import BundleBuilder
from edgeml.errors import DataError, UsageError, ValidationFailed
from edgeml.manifest import SAMPLES_NAME, ArtifactEntry, Manifest
from edgeml.samples import write_samples
from edgeml.schema import Schema, TensorSpec
from edgeml.runtime.backends import BackendOptions, get_backend

from . import compat
from .data import Dataset, load_dataset, synthetic_dataset
from .execution import batch_size, measure_latency, run_all
from .exporters import ExportContext, get_exporter
from .options import ConvertOptions
from .reference import reference_statistics
from .sources import load_source
from .sources.base import SourceModel
from .validate import TaskInfo, ValidationReport, validate

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
GOLDEN_SAMPLES = 16
HOLDOUT_FRACTION = 0.2


@dataclass
class ArtifactResult:
    entry: ArtifactEntry
    report: ValidationReport


@dataclass
class ConversionResult:
    bundle: Path
    manifest: Manifest
    results: list[ArtifactResult]


Step = Callable[[str], None]


def convert(options: ConvertOptions, step: Step = lambda _msg: None) -> ConversionResult:
    _check_names(options)
    sign_key = signing.load_private_key(options.sign_key) if options.sign_key else None
    exporters = [get_exporter(f) for f in options.formats]
    compat.refuse_unsupported(_source_kind_hint(options.source), options.formats, options.precisions)  # before any work
    step("loading source model")
    source = load_source(options)
    compat.refuse_unfit(source, options.formats, options.precisions)
    calibration, validation = _datasets(options, source)
    info = TaskInfo(source.task, source.label_output, source.score_output, source.labels)
    step("running the source model on the validation data")
    reference = run_all(source.reference, validation.feeds, source.schema)
    results: list[ArtifactResult] = []
    with tempfile.TemporaryDirectory(prefix="edgeml-convert-") as scratch, BundleBuilder(options.out, force=options.force) as builder:
        ctx = ExportContext(source, options, calibration, builder.root, validation, Path(scratch))
        for exp in exporters:
            for precision in options.precisions:
                step(f"exporting {exp.format}/{precision.value}")
                artifact = exp.export(ctx, precision)
                step(f"validating {exp.format}/{precision.value} on {exp.backend}")
                session = get_backend(exp.backend).load(builder.root / artifact.path, BackendOptions(threads=1, precision=precision.value))
                schema = _artifact_schema(source.schema, artifact.details)
                actual = run_all(session.run, validation.feeds, schema)
                report = validate(reference, actual, source.comparable_outputs, info,
                                  options.tolerance_for(precision), validation.labels, validation.source)
                sample = _latency_sample(validation.feeds, batch_size(schema) or 1)
                latency = measure_latency(session.run, sample, runs=options.latency_runs)
                entry = ArtifactEntry(exp.format, precision.value, exp.backend, artifact.path,
                                      builder.entries_under(artifact.files_root), report.to_dict(), latency, artifact.details)
                results.append(ArtifactResult(entry, report))
        _flag_slow_int8(results)
        failed = [r for r in results if not r.report.passed]
        if failed and not options.allow_degraded:
            raise ValidationFailed(_failure_message(failed), report=failed)
        step("writing bundle")
        _write_samples(builder.root / SAMPLES_NAME, validation, reference, source)
        stats_data = calibration or validation
        stats_outputs = reference if stats_data is validation else run_all(source.reference, stats_data.feeds, source.schema)
        manifest = Manifest(
            name=options.name, version=options.version,
            created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            task=source.task.value, source=source.source_info(),
            inputs=source.schema.inputs, outputs=source.schema.outputs, labels=source.labels,
            artifacts=[r.entry for r in results], samples=builder.file_entry(SAMPLES_NAME),
            reference=reference_statistics(source.schema, stats_data.feeds, stats_outputs, info, stats_data.source),
            metrics=source.metrics,
        )
        bundle = builder.commit(manifest, sign_key)
    return ConversionResult(bundle, manifest, results)


def _check_names(options: ConvertOptions) -> None:
    for what, value in (("--name", options.name), ("--version", options.version)):
        if not NAME_RE.match(value or ""):
            raise UsageError(f"{what} {value!r}: use letters, digits, '.', '_' and '-' (starting with a letter or digit)")
    if not options.precisions or not options.formats:
        raise UsageError("give at least one --to format and one --precision")


def _source_kind_hint(source: str) -> str:
    from .sources import loaders

    return next((l.name for l in loaders() if l.matches(source)), "unknown")


def _latency_sample(feeds: dict[str, np.ndarray], batch: int) -> dict[str, np.ndarray]:
    """One sample (dynamic batch), or the artifact's fixed batch made by repeating the first sample."""
    return {k: np.repeat(v[:1], batch, axis=0) for k, v in feeds.items()}


def _artifact_schema(schema: Schema, details: dict) -> Schema:
    """The source schema, with the batch axis pinned when the artifact records a fixed batch."""
    fixed = details.get("fixed_batch")
    if not fixed:
        return schema
    inputs = [TensorSpec(s.name, s.dtype, [fixed, *s.shape[1:]], s.feature_names) for s in schema.inputs]
    return Schema(inputs=inputs, outputs=schema.outputs)


def _datasets(options: ConvertOptions, source: SourceModel) -> tuple[Dataset | None, Dataset]:
    cal_path, cal_target = _data_file(options.calibration, source.default_calibration, options.target, source.default_target)
    val_path, val_target = _data_file(options.validation, source.default_validation, options.target, source.default_target)
    calibration = load_dataset(cal_path, source.schema, cal_target, "calibration") if cal_path else None
    if val_path:
        return calibration, load_dataset(val_path, source.schema, val_target, "validation")
    if calibration is not None:
        n = len(calibration)
        if n < 5:
            raise DataError(f"calibration data has {n} samples; pass --validation FILE or at least 5 calibration samples (20% are held out for validation)")
        cut = n - max(1, int(n * HOLDOUT_FRACTION))
        return calibration.take(slice(0, cut)), calibration.take(slice(cut, n))
    synthetic = synthetic_dataset(source.schema)
    if synthetic is None:
        raise DataError("validation needs data for this model: pass --validation FILE or --calibration FILE (.npz or .csv)")
    return None, synthetic


def _data_file(given: Path | None, default: Path | None, target: str | None, default_target: str | None) -> tuple[Path | None, str | None]:
    """The data file to use and its label column: the option's, else the source's own (train runs)."""
    if given is not None or default is None:
        return given, target
    return default, target or default_target


def _flag_slow_int8(results: list[ArtifactResult]) -> None:
    fp32 = {r.entry.format: r.entry.latency.get("median_ms") for r in results if r.entry.precision == "fp32"}
    for r in results:
        base = fp32.get(r.entry.format)
        if r.entry.precision == "int8" and base and r.entry.latency.get("median_ms", 0) > base:
            r.entry.details["slower_than_fp32"] = True


def _failure_message(failed: list[ArtifactResult]) -> str:
    parts = [f"{r.entry.key}: {'; '.join(r.report.failures)}" for r in failed]
    return "validation failed — " + " | ".join(parts) + " (loosen with --atol/--min-agreement/--max-metric-drop, or keep them with --allow-degraded)"


def _write_samples(path: Path, validation: Dataset, reference: dict[str, np.ndarray], source: SourceModel) -> None:
    n = min(GOLDEN_SAMPLES, len(validation))
    write_samples(path, {k: v[:n] for k, v in validation.feeds.items()}, {k: np.asarray(v)[:n] for k, v in reference.items()})
