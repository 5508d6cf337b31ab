"""Text models at conversion time: named dynamic dimensions and the tokenizer a bundle carries.

Named dimensions: every dynamic axis of an ONNX graph keeps the name its exporter gave it (ONNX
`dim_param`; torch.export `Dim` names become dim_params) in the schema's `dim_names`. For a text model
(an input named input_ids) the token inputs' first two axes are called `batch` and `sequence`, and
every tensor using the same original name is renamed with them (Optimum's `batch_size` /
`sequence_length`, torch's `s0` ...), so a client and the runtime see which inputs must agree.

Tokenizer: `--tokenizer tokenizer.json` (a Hugging Face `tokenizers` file), or a tokenizer.json next to
a text model's source, is checked to load, copied into the bundle as `tokenizer.json` (hashed in the
manifest, so the signature covers it) and recorded with what each model input means.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable

from edgeml.errors import SourceError, UsageError, require
from edgeml.manifest import TEXT_ROLES, TokenizerEntry
from edgeml.schema import Schema

TOKENIZER_NAME = "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"  # transformers' companion file: model_max_length
MAX_SEQUENCE = 1 << 20
PROBE_LIMIT = 1024  # longest sequence probed on the source model (attention memory grows with its square)
TEXT_AXES = ("batch", "sequence")  # the canonical names of a token input's axes


def name_dims(schema: Schema, onnx_model: Any, renames: dict[str, str] | None = None) -> Schema:
    """Record the graph's dim_params as the schema's dim names (in place); text models get batch/sequence."""
    graph = {vi.name: vi for vi in list(onnx_model.graph.input) + list(onnx_model.graph.output)}
    params = {spec.name: _dim_params(graph.get(spec.name)) for spec in schema.inputs + schema.outputs}
    renames = dict(renames or {})
    for spec in schema.inputs:
        if spec.name in TEXT_ROLES:
            for axis, canonical in enumerate(TEXT_AXES[:len(spec.shape)]):
                original = params[spec.name][axis] if axis < len(params[spec.name]) else None
                if spec.shape[axis] is None and original:
                    renames.setdefault(original, canonical)
                elif spec.shape[axis] is None and axis < len(params[spec.name]):
                    params[spec.name][axis] = canonical
    for spec in schema.inputs + schema.outputs:
        names = [renames.get(p, p) if p else None for p in params[spec.name]]
        names = [n if axis < len(spec.shape) and spec.shape[axis] is None else None for axis, n in enumerate(names)]
        spec.dim_names = names[:len(spec.shape)] if any(names) else None
    return schema


def _dim_params(value_info: Any) -> list[str | None]:
    if value_info is None or not value_info.type.tensor_type.HasField("shape"):
        return []
    return [d.dim_param or None for d in value_info.type.tensor_type.shape.dim]


def find_tokenizer(given: Path | None, source: str, schema: Schema) -> Path | None:
    """The tokenizer file to package: `given`, else a tokenizer.json in (or beside) a text model's source.

    Checked before any export work: the file loads and the model's inputs are token tensors.
    """
    if given is not None:
        if not Path(given).is_file():
            raise UsageError(f"--tokenizer {given}: file not found (give the tokenizers JSON, e.g. tokenizer.json)")
        found = Path(given)
    else:
        if not any(s.name == "input_ids" for s in schema.inputs):
            return None  # only a text model picks one up on its own
        path = Path(source)
        found = (path if path.is_dir() else path.parent) / TOKENIZER_NAME
        if not found.is_file():
            return None
    text_roles(schema)
    _load(found)
    return found


def text_roles(schema: Schema) -> dict[str, str]:
    """role -> input name for a model whose inputs are all token tensors; UsageError otherwise."""
    roles = {s.name: s.name for s in schema.inputs if s.name in TEXT_ROLES}
    others = [s.describe() for s in schema.inputs if s.name not in TEXT_ROLES]
    if "input_ids" not in roles or others:
        raise UsageError("--tokenizer needs a text model whose inputs are input_ids (and optionally attention_mask, "
                         f"token_type_ids); this model's inputs are {', '.join(s.describe() for s in schema.inputs)}")
    return roles


def max_length(schema: Schema, tokenizer_json: Path) -> int | None:
    """The longest sequence the model takes: a fixed sequence axis, else the tokenizer's truncation
    setting, else `model_max_length` of a Hugging Face tokenizer_config.json beside the tokenizer."""
    ids = next(s for s in schema.inputs if s.name == "input_ids")
    if len(ids.shape) > 1 and ids.shape[1] is not None:
        return int(ids.shape[1])
    tok = _load(tokenizer_json)
    truncation = tok.truncation or {}
    if truncation.get("max_length"):
        return int(truncation["max_length"])
    return _config_max_length(Path(tokenizer_json).with_name(TOKENIZER_CONFIG))


def _config_max_length(path: Path) -> int | None:
    try:
        value = json.loads(path.read_text()).get("model_max_length") if path.is_file() else None
    except (OSError, ValueError, AttributeError):
        return None
    # transformers writes a huge sentinel (1e30) when the model sets no limit
    return int(value) if isinstance(value, (int, float)) and 0 < value <= MAX_SEQUENCE else None


def probe_max_length(reference: Callable[[dict[str, Any]], Any], schema: Schema, roles: dict[str, str]) -> int | None:
    """The longest of 8, 16, ... PROBE_LIMIT tokens the source model runs on (one sample), when
    neither the graph nor the tokenizer says: a learned position table makes longer texts fail on the
    device, so they are truncated there instead. None when every probed length runs."""
    import numpy as np

    from edgeml import dtypes

    specs = {s.name: s for s in schema.inputs}
    longest, length = None, 8
    while length <= PROBE_LIMIT:
        feeds = {name: np.full((1, length), 1 if role != "token_type_ids" else 0, dtypes.to_numpy(specs[name].dtype))
                 for role, name in roles.items()}
        try:
            reference(feeds)
        except Exception:  # any framework error: this length is too long for the model
            return longest
        longest, length = length, length * 2
    return None


def package_tokenizer(tokenizer_json: Path, schema: Schema, bundle_root: Path, file_entry: Any,
                      reference: Callable[[dict[str, Any]], Any] | None = None) -> TokenizerEntry:
    """Copy the tokenizer into the bundle under construction and describe it for the manifest.

    file_entry: BundleBuilder.file_entry (hashes the copied file); reference: the source model, probed
    for its longest sequence when nothing records it.
    """
    roles = text_roles(schema)
    limit = max_length(schema, tokenizer_json)  # also proves the file loads
    if limit is None and reference is not None:
        limit = probe_max_length(reference, schema, roles)
    shutil.copyfile(tokenizer_json, bundle_root / TOKENIZER_NAME)
    return TokenizerEntry(file_entry(TOKENIZER_NAME), roles, "text", limit)


def _load(path: Path) -> Any:
    tokenizers = require("tokenizers", "text", "tokenizers")
    try:
        return tokenizers.Tokenizer.from_file(str(path))
    except Exception as exc:  # the Rust side raises a bare Exception for a bad file
        raise SourceError(f"--tokenizer {path}: not a Hugging Face tokenizers JSON file "
                          f"({str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__})") from None



def synthetic_text_dataset(schema: Schema, tokenizer_json: Path, n: int = 32, seed: int = 0) -> dict[str, Any]:
    """Validation feeds for a text model given no data: texts of random vocabulary words, tokenized
    like the device will (padded to the longest, truncated at the model's max length)."""
    import numpy as np

    from edgeml import dtypes
    from edgeml.runtime.text import ENCODING_FIELD, load_tokenizer

    rng = np.random.default_rng(seed)
    limit = max_length(schema, tokenizer_json)
    ids = next(s for s in schema.inputs if s.name == "input_ids")
    fixed = ids.shape[1] if len(ids.shape) > 1 and ids.shape[1] is not None else None
    tok = load_tokenizer(tokenizer_json, limit, fixed)
    # Plain words of the vocabulary (no special tokens, sub-word pieces or punctuation), up to 16 a text.
    words = sorted(w for w in tok.get_vocab() if w.isalpha() and w.isascii() and len(w) > 1) or ["a"]
    longest = min(limit or 16, 16)
    texts = [" ".join(rng.choice(words, size=int(rng.integers(1, longest + 1)))) for _ in range(n)]
    encodings = tok.encode_batch(texts)
    specs = {s.name: s for s in schema.inputs}
    return {name: np.array([getattr(e, ENCODING_FIELD[role]) for e in encodings], dtype=dtypes.to_numpy(specs[name].dtype))
            for role, name in text_roles(schema).items()}
