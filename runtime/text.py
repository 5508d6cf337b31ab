"""Raw text in, token tensors out: the device side of a text bundle's tokenizer.

A bundle whose manifest has a `tokenizer` entry (edgeml/manifest.py) takes raw text as well as token
ids: `Model.predict(["a sentence", ...])`, `Model.predict({"text": [...]})` or an OIP BYTES tensor
named `text`. The texts of one call are encoded together by the Hugging Face `tokenizers` package
(Rust; imported on first use, so `import edgeml.runtime` never loads it), padded to the longest,
truncated to the model's max length when known, and turned into the inputs the manifest names
(input_ids, attention_mask, token_type_ids) in the model's dtypes. The tokenizer file's sha256 is
checked against the manifest before it is read.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeml import dtypes
from edgeml.bundle import check_file
from edgeml.errors import DataError, require
from edgeml.manifest import TokenizerEntry
from edgeml.schema import TensorSpec

MAX_TEXTS = 4096  # texts per call; a bigger request is refused, not tokenized into memory
# role -> the attribute of a tokenizers.Encoding that holds it
ENCODING_FIELD = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}


class TextEncoder:
    """Encode texts for one text bundle; built when the model loads, the tokenizer read on first use."""

    def __init__(self, root: Path, entry: TokenizerEntry, inputs: list[TensorSpec]) -> None:
        check_file(root, entry.file)  # the manifest (signed) vouches for the file: hash it before use
        self.entry = entry
        self.text_input = entry.text_input
        self.path = root / entry.file.path
        specs = {s.name: s for s in inputs}
        missing = [n for n in entry.inputs.values() if n not in specs]
        if missing:
            raise DataError(f"the bundle's tokenizer fills input(s) {', '.join(map(repr, missing))} the model "
                            f"does not have (inputs: {', '.join(specs)})")
        self.roles = [(role, name, dtypes.to_numpy(specs[name].dtype)) for role, name in entry.inputs.items()]
        ids = specs[entry.inputs["input_ids"]].shape
        self.fixed_length = ids[1] if len(ids) > 1 and ids[1] is not None else None  # pad to it, not the longest
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    def accepts(self, value: Any) -> bool:
        """True for raw text: a string, a list of strings, a string array, or {text_input: ...} alone."""
        if isinstance(value, Mapping):
            return set(value) == {self.text_input}
        return _is_text(value)

    def encode(self, value: Any) -> dict[str, np.ndarray]:
        """Feeds for the model from raw text (see `accepts`)."""
        texts = _texts(value[self.text_input] if isinstance(value, Mapping) else value, self.text_input)
        encodings = self.tokenizer().encode_batch(texts)
        return {name: np.array([getattr(e, ENCODING_FIELD[role]) for e in encodings], dtype=dt)
                for role, name, dt in self.roles}

    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            with self._lock:
                if self._tokenizer is None:
                    self._tokenizer = load_tokenizer(self.path, self.fixed_length or self.entry.max_length,
                                                     self.fixed_length)
        return self._tokenizer


def load_tokenizer(path: Path, max_length: int | None, pad_to: int | None = None) -> Any:
    """A `tokenizers.Tokenizer` from its JSON, set to pad to the longest text (or to `pad_to`, a fixed
    sequence axis) and truncate at `max_length`."""
    tokenizers = require("tokenizers", "text", "tokenizers")
    try:
        tok = tokenizers.Tokenizer.from_file(str(path))
    except Exception as exc:  # the Rust side raises a bare Exception for a bad file
        raise DataError(f"{path.name} is not a readable tokenizers JSON file: {str(exc).splitlines()[0][:200]}") from None
    padding = tok.padding or {}
    pad_id, pad_token = padding.get("pad_id"), padding.get("pad_token")
    if pad_id is None or pad_token is None:
        pad_token = next((t for t in ("[PAD]", "<pad>", "<|pad|>") if tok.token_to_id(t) is not None), None)
        pad_id = tok.token_to_id(pad_token) if pad_token else 0
        pad_token = pad_token or "[PAD]"
    tok.enable_padding(pad_id=pad_id, pad_token=pad_token, pad_type_id=padding.get("pad_type_id", 0),
                       direction=padding.get("direction", "right"), length=pad_to)  # None: the longest of the call
    if max_length:
        tok.enable_truncation(max_length=max_length)
    return tok


def _is_text(value: Any) -> bool:
    if isinstance(value, str):
        return True
    if isinstance(value, np.ndarray):
        return value.dtype.kind in "US" or (value.dtype.kind == "O" and value.size > 0 and isinstance(value.flat[0], str))
    return isinstance(value, (list, tuple)) and bool(value) and all(isinstance(v, str) for v in value)


def _texts(value: Any, where: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, np.ndarray):
        value = value.reshape(-1).tolist()
    if not isinstance(value, Sequence) or not value:
        raise DataError(f"{where!r}: pass one text or a non-empty list of texts")
    try:
        texts = [v.decode() if isinstance(v, bytes) else v for v in value]
    except UnicodeDecodeError:
        raise DataError(f"{where!r}: texts must be UTF-8") from None
    if not all(isinstance(t, str) for t in texts):
        raise DataError(f"{where!r}: every element must be a string")
    if len(texts) > MAX_TEXTS:
        raise DataError(f"{where!r}: {len(texts)} texts in one call; send at most {MAX_TEXTS}")
    return texts
