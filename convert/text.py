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

import shutil
from pathlib import Path
from typing import Any

from edgeml.errors import SourceError, UsageError, require
from edgeml.manifest import TEXT_ROLES, TokenizerEntry
from edgeml.schema import Schema

TOKENIZER_NAME = "tokenizer.json"
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
    """The longest sequence the model takes: a fixed sequence axis, else the tokenizer's truncation setting."""
    ids = next(s for s in schema.inputs if s.name == "input_ids")
    if len(ids.shape) > 1 and ids.shape[1] is not None:
        return int(ids.shape[1])
    tok = _load(tokenizer_json)
    truncation = tok.truncation or {}
    return int(truncation["max_length"]) if truncation.get("max_length") else None


def package_tokenizer(tokenizer_json: Path, schema: Schema, bundle_root: Path, file_entry: Any) -> TokenizerEntry:
    """Copy the tokenizer into the bundle under construction and describe it for the manifest.

    file_entry: BundleBuilder.file_entry (hashes the copied file).
    """
    roles = text_roles(schema)
    limit = max_length(schema, tokenizer_json)  # also proves the file loads
    shutil.copyfile(tokenizer_json, bundle_root / TOKENIZER_NAME)
    return TokenizerEntry(file_entry(TOKENIZER_NAME), roles, "text", limit)


def _load(path: Path) -> Any:
    tokenizers = require("tokenizers", "text", "tokenizers")
    try:
        return tokenizers.Tokenizer.from_file(str(path))
    except Exception as exc:  # the Rust side raises a bare Exception for a bad file
        raise SourceError(f"--tokenizer {path}: not a Hugging Face tokenizers JSON file "
                          f"({str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__})") from None

