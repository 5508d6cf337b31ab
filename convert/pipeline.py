"""`edgeml convert` end to end: load the source, export every (format, precision), validate each
artifact on the backend that will run it against its task's bound, and commit a signed bundle atomically.

Partial bundles: a target that fails (export error, converter crash, missed bound) is listed in the
manifest's `failed` with its reason and ships no file; the bundle holds every passing artifact. With
`strict`, any failing target writes nothing. With no passing artifact nothing is written either.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from edgeml import signing
from edgeml.bundle import BundleBuilder
from edgeml.errors import DataError, UsageError, ValidationFailed
from edgeml.manifest import SAMPLES_NAME, FailedTarget, Manifest
from edgeml.samples import write_samples

from . import compat
from .data import Dataset, load_dataset, synthetic_dataset
from .execution import run_all
from .exporters import ExportContext, get_exporter
from .options import ConvertOptions
from .reference import reference_statistics
from .sources import load_source
from .sources.base import SourceModel
from .sources.tasks import refine_task
from .targets import ArtifactResult, crash_reason, run_target
from .text import find_tokenizer, package_tokenizer, probe_max_length, synthetic_text_dataset, text_roles
from .validate import TaskInfo

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
GOLDEN_SAMPLES = 16
HOLDOUT_FRACTION = 0.2


@dataclass
class ConversionResult:
    bundle: Path
    manifest: Manifest
    results: list[ArtifactResult]  # artifacts in the bundle (failing ones only with --allow-degraded)
    failed: list[FailedTarget] = field(default_factory=list)  # requested targets not shipped

    @property
    def complete(self) -> bool:
        """Every requested target is in the bundle and passed."""
        return not self.failed and all(r.report.passed for r in self.results)


Step = Callable[[str], None]


def convert(options: ConvertOptions, step: Step = lambda _msg: None) -> ConversionResult:
    _check_names(options)
    sign_key = signing.load_private_key(options.sign_key) if options.sign_key else None
    exporters = [get_exporter(f) for f in options.formats]
    compat.refuse_unsupported(_source_kind_hint(options.source), options.formats, options.precisions)  # before any work
    step("loading source model")
    source = load_source(options)
    compat.refuse_unfit(source, options.formats, options.precisions)
    tokenizer = find_tokenizer(options.tokenizer, options.source, source.schema)  # text models (convert/text.py)
    calibration, validation = _datasets(options, source, tokenizer)
    step("running the source model on the validation data")
    reference = run_source(source, validation.feeds, "validation", tokenizer)
    _decide_task(source, options, reference)
    info = TaskInfo(source.task, source.label_output, source.score_output, source.labels, options.detection_layout)
    results: list[ArtifactResult] = []
    failed: list[FailedTarget] = []
    with tempfile.TemporaryDirectory(prefix="edgeml-convert-") as scratch, BundleBuilder(options.out, force=options.force) as builder:
        ctx = ExportContext(source, options, calibration, builder.root, validation, Path(scratch))
        ctx.cache["validation_reference"] = reference  # int8 recipes judge candidates against it (quantize/bound_check.py)
        for exp in exporters:
            for precision in options.precisions:
                outcome = run_target(exp, precision, ctx, builder, reference, info, step)
                (failed if isinstance(outcome, FailedTarget) else results).append(outcome)
        _flag_slow_int8(results)
        if failed and options.strict:
            raise ValidationFailed(_failure_message(failed, strict=True), report=failed)
        if not results:
            raise ValidationFailed(_failure_message(failed, strict=False), report=failed)
        step("writing bundle")
        _write_samples(builder.root / SAMPLES_NAME, validation, reference, source)
        stats_data = calibration or validation
        stats_outputs = reference if stats_data is validation else run_source(source, stats_data.feeds, "calibration", tokenizer)
        manifest = Manifest(
            name=options.name, version=options.version,
            created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            task=source.task.value, source=source.source_info(),
            inputs=source.schema.inputs, outputs=source.schema.outputs, labels=source.labels,
            artifacts=[r.entry for r in results], samples=builder.file_entry(SAMPLES_NAME),
            reference=reference_statistics(source.schema, stats_data.feeds, stats_outputs, info, stats_data.source),
            metrics=source.metrics, failed=failed, lineage=source.lineage,
            tokenizer=package_tokenizer(tokenizer, source.schema, builder.root, builder.file_entry, source.reference)
            if tokenizer else None,
        )
        bundle = builder.commit(manifest, sign_key)
    return ConversionResult(bundle, manifest, results, failed)


def run_source(source: SourceModel, feeds: dict[str, np.ndarray], what: str,
               tokenizer: Path | None = None) -> dict[str, np.ndarray]:
    """The source model's outputs on the validation (or calibration) data. Data it cannot run (sequences
    longer than it accepts, a wrong feature count, a backend error) is one DataError naming the inputs and
    their shapes with the backend's first line, never a traceback; nothing has been written yet. For a
    text model, a sequence longer than the longest the model runs (probed) is named as the cause."""
    try:
        return run_all(source.reference, feeds, source.schema)
    except (UsageError, DataError):
        raise
    except Exception as exc:  # a framework or backend error on data the model does not accept
        given = ", ".join(f"{name} {np.asarray(v).dtype} {list(np.shape(v))}" for name, v in feeds.items())
        hint = _sequence_hint(source, feeds) if tokenizer is not None else ""
        raise DataError(f"the source model cannot run the {what} data (inputs: {given}){hint}; check each input "
                        f"against the model's (shape, length, dtype): {crash_reason(exc)}") from None


def _sequence_hint(source: SourceModel, feeds: dict[str, np.ndarray]) -> str:
    """': input_ids holds sequences of 40 tokens, the model runs at most 32' when probing shows it."""
    try:
        roles = text_roles(source.schema)
        ids = np.asarray(feeds.get(roles["input_ids"]))
        longest = probe_max_length(source.reference, source.schema, roles)
    except Exception:  # the hint is best effort: the error itself is raised either way
        return ""
    if longest is None or ids.ndim < 2 or ids.shape[1] <= longest:
        return ""
    return f": {roles['input_ids']} holds sequences of {ids.shape[1]} tokens, the model runs at most {longest}"


def _decide_task(source: SourceModel, options: ConvertOptions, reference: dict) -> None:
    """Settle an inferred task on the source's outputs (convert/sources/tasks.py); record the rule."""
    task, score, rule = refine_task(source.kind, source.task, source.score_output, options.task, reference, source.labels)
    source.task, source.score_output = task, score
    source.details["task_rule"] = rule
    if task.value == "detection":
        source.details["detection_layout"] = options.detection_layout


def _check_names(options: ConvertOptions) -> None:
    for what, value in (("--name", options.name), ("--version", options.version)):
        if not NAME_RE.match(value or ""):
            raise UsageError(f"{what} {value!r}: use letters, digits, '.', '_' and '-' (starting with a letter or digit)")
    if not options.precisions or not options.formats:
        raise UsageError("give at least one --to format and one --precision")


def _source_kind_hint(source: str) -> str:
    from .sources import loaders

    return next((l.name for l in loaders() if l.matches(source)), "unknown")


def _datasets(options: ConvertOptions, source: SourceModel, tokenizer: Path | None = None) -> tuple[Dataset | None, Dataset]:
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
    if synthetic is None and tokenizer is not None:  # a text model: tokenized random vocabulary (convert/text.py)
        synthetic = Dataset(synthetic_text_dataset(source.schema, tokenizer), None, "synthetic text")
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


def _failure_message(failed: list[FailedTarget], strict: bool) -> str:
    parts = [f"{f.key}: {f.reason}" for f in failed]
    why = "--strict: nothing written" if strict else "no target passed, nothing written"
    return (f"validation failed for {len(failed)} target(s) ({why}) — " + " | ".join(parts)
            + " (loosen with --atol/--max-rel-error/--min-agreement/--max-metric-drop, or keep them with --allow-degraded)")


def _write_samples(path: Path, validation: Dataset, reference: dict[str, np.ndarray], source: SourceModel) -> None:
    n = min(GOLDEN_SAMPLES, len(validation))
    write_samples(path, {k: v[:n] for k, v in validation.feeds.items()}, {k: np.asarray(v)[:n] for k, v in reference.items()})
