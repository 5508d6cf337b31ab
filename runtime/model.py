"""`load(bundle) -> Model`: pick, verify and load one artifact; `Model.predict` runs it.

Everything that can be computed once is computed in `load`: the input checks, the backend's run
function and the output names. `predict` builds the feeds and calls the backend, nothing else.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeml.errors import DataError, EdgeMLError, UsageError
from edgeml.manifest import ArtifactEntry, Manifest
from edgeml.schema import TensorSpec
from edgeml.tensors import fixed_batch as schema_fixed_batch
from edgeml.tensors import run_in_chunks

from .backends import BackendOptions, get_backend
from .inputs import FeedBuilder, Feeds
from .integrity import VerifyKey, check_artifact, public_key, read_checked_manifest
from .selection import AUTO, Choice, Preference, select_artifact


class InferenceError(EdgeMLError):
    """The backend failed on inputs that passed the schema checks."""

    reason = "inference_failed"


@dataclass(frozen=True)
class ModelInfo:
    name: str
    version: str
    backend: str
    format: str
    precision: str
    task: str
    artifact: str  # path of the loaded artifact inside the bundle
    threads: int | None
    signature_verified: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Model:
    """A loaded artifact of a bundle. Create it with `edgeml.runtime.load`."""

    def __init__(self, bundle: Path, manifest: Manifest, artifact: ArtifactEntry, session: Any, info: ModelInfo) -> None:
        self.bundle = bundle
        self.manifest = manifest
        self.artifact = artifact
        self.info = info
        self.inputs: list[TensorSpec] = manifest.inputs
        self.outputs: list[TensorSpec] = manifest.outputs
        self.labels = manifest.labels
        self._session = session
        # A fixed-batch artifact takes any number of samples: they are run `fixed_batch` at a time.
        self.fixed_batch: int | None = fixed_batch(manifest.inputs, artifact)
        self.dynamic_batch = self.fixed_batch is None and all(s.has_dynamic_batch for s in manifest.inputs)
        # Bound once: the hot path does no attribute lookups beyond this.
        self._run = session.run if self.fixed_batch is None else self._run_in_batches
        specs = manifest.inputs if self.fixed_batch is None else [_any_batch(s) for s in manifest.inputs]
        self.prepare = FeedBuilder(specs, artifact.details.get("io_dtype"))
        # Text bundles (a tokenizer in the manifest) also take raw text; runtime/text.py, loaded only for them.
        self.text: Any = _text_encoder(bundle, manifest)

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def version(self) -> str:
        return self.info.version

    def predict(self, inputs: Any) -> dict[str, np.ndarray]:
        """Run the model on a dict of arrays, one array (one-input models) or records (tabular models);
        text bundles also take raw text: a string, a list of strings or {"text": [...]}.

        Returns the outputs by name. Raises DataError for inputs that do not fit the schema.
        """
        text = self.text
        if text is not None and text.accepts(inputs):
            inputs = text.encode(inputs)
        feeds = self.prepare(inputs)
        try:
            return self._run(feeds)
        except Exception as exc:
            raise self._backend_error(exc) from None

    def run(self, feeds: Feeds) -> dict[str, np.ndarray]:
        """Run feeds already produced by `prepare` (the micro-batcher joins several first)."""
        try:
            return self._run(feeds)
        except Exception as exc:
            raise self._backend_error(exc) from None

    def _run_in_batches(self, feeds: Feeds) -> dict[str, np.ndarray]:
        """Run `fixed_batch` samples per backend call, the last chunk padded by repeating its last sample."""
        step = self.fixed_batch
        n = len(next(iter(feeds.values())))
        if n == step:
            return self._session.run(feeds)
        if n == 0:
            raise DataError(f"no samples given; {self.info.name} runs {step} sample(s) per call and needs at least one")
        return run_in_chunks(self._run_fixed_chunk, feeds, step, pad=True)

    def _run_fixed_chunk(self, chunk: Feeds) -> dict[str, np.ndarray]:
        outputs = self._session.run(chunk)
        step = self.fixed_batch
        for name, value in outputs.items():
            if np.ndim(value) == 0 or len(value) != step:
                raise InferenceError(f"output {name!r} of {self.info.name} has no batch axis of {step} (shape "
                                     f"{list(np.shape(value))}); call it with exactly {step} sample(s)")
        return outputs

    def _backend_error(self, exc: Exception) -> EdgeMLError:
        if isinstance(exc, EdgeMLError):
            return exc
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return InferenceError(f"{self.info.backend} failed running {self.info.name} {self.info.version} "
                              f"({self.info.format}/{self.info.precision}): {first[:400]}")

    def __repr__(self) -> str:
        i = self.info
        return f"<Model {i.name} {i.version} {i.format}/{i.precision} on {i.backend}>"


def fixed_batch(inputs: list[TensorSpec], artifact: ArtifactEntry) -> int | None:
    """The artifact's fixed batch size (from its details or the schema's axis 0), None when dynamic."""
    recorded = artifact.details.get("fixed_batch")
    if recorded:
        return int(recorded)
    return schema_fixed_batch(inputs)


def _any_batch(spec: TensorSpec) -> TensorSpec:
    if not spec.shape:
        return spec
    return TensorSpec(spec.name, spec.dtype, [None, *spec.shape[1:]], spec.feature_names, spec.dim_names)


def _text_encoder(bundle: Path, manifest: Manifest) -> Any:
    if manifest.tokenizer is None:
        return None
    from .text import TextEncoder

    return TextEncoder(bundle, manifest.tokenizer, manifest.inputs)


def load(
    bundle: str | Path,
    backend: Choice = AUTO,
    precision: Choice = AUTO,
    threads: int | None = None,
    verify_key: VerifyKey = None,
) -> Model:
    """Load the best artifact of `bundle` this device can run.

    backend/precision: "auto", one name, or an ordered preference ("openvino,onnxruntime" or a list);
    "auto" follows $EDGEML_BACKEND_ORDER / $EDGEML_PRECISION_ORDER, else the built-in order.
    verify_key: public key (path or key object); the manifest's signature must verify with it. The
    chosen artifact's hashes are always checked. Raises IntegrityError for a tampered bundle.
    """
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise UsageError(f"threads must be a positive integer, got {threads!r}")
    root = Path(bundle)
    key = public_key(verify_key)
    manifest = read_checked_manifest(root, key)
    artifact = select_artifact(manifest, Preference.resolve(backend, precision))
    check_artifact(root, artifact)
    session = get_backend(artifact.backend).load(root / artifact.path, BackendOptions(threads=threads, precision=artifact.precision))
    info = ModelInfo(manifest.name, manifest.version, artifact.backend, artifact.format, artifact.precision,
                     manifest.task, artifact.path, threads, key is not None)
    return Model(root, manifest, artifact, session, info)
