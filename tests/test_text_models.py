"""Text models: the bundle carries the tokenizer and named dynamic dimensions; the runtime and
`edgeml serve` take raw text and refuse token inputs whose shared sequence axis disagrees.

A tiny WordLevel tokenizer is built in code with `tokenizers`; the model is a two-layer BERT-like
encoder in plain torch (input_ids + attention_mask, masked mean pooling), exported to ONNX with
Optimum's axis names (batch_size, sequence_length), converted with --task embedding --tokenizer.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
tokenizers = pytest.importorskip("tokenizers")

from torch import nn  # noqa: E402

from edgeml.errors import DataError, IntegrityError  # noqa: E402
from edgeml.runtime import load  # noqa: E402
from edgeml.runtime.server import Daemon, ServeConfig  # noqa: E402
from runtime_fixtures import Client  # noqa: E402

WORDS = "the a cat dog sat ran on mat fast slow big small red blue house tree runs jumps over under".split()
SENTENCES = ["the cat sat on the mat", "a dog ran fast", "the big red house", "a small blue tree",
             "the dog jumps over the cat", "cat", "a slow dog runs under the big tree", "the mat"]
HIDDEN, MAX_POSITIONS = 16, 32


def make_tokenizer(path: Path) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tok.save(str(path))
    return path


class MaskedBert(nn.Module):
    """Embeddings, two post-norm attention blocks honouring the padding mask, masked mean pooling."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.tokens, self.positions = nn.Embedding(vocab, HIDDEN), nn.Embedding(MAX_POSITIONS, HIDDEN)
        self.norm = nn.LayerNorm(HIDDEN)
        self.qkv = nn.ModuleList(nn.Linear(HIDDEN, 3 * HIDDEN) for _ in range(2))
        self.ff = nn.ModuleList(nn.Sequential(nn.Linear(HIDDEN, 32), nn.GELU(), nn.Linear(32, HIDDEN)) for _ in range(2))
        self.norms = nn.ModuleList(nn.LayerNorm(HIDDEN) for _ in range(4))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1])
        x = self.norm(self.tokens(input_ids) + self.positions(positions))
        mask = attention_mask.to(x.dtype)
        bias = (1.0 - mask)[:, None, :] * -1e4
        for i in range(2):
            q, k, v = self.qkv[i](x).chunk(3, dim=-1)
            attn = torch.softmax(q @ k.transpose(1, 2) / HIDDEN ** 0.5 + bias, dim=-1)
            x = self.norms[2 * i](x + attn @ v)
            x = self.norms[2 * i + 1](x + self.ff[i](x))
        pooled = (x * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1.0)
        return nn.functional.normalize(pooled, dim=-1)


def tokenize(tokenizer_json: Path, texts: list[str]) -> dict[str, np.ndarray]:
    tok = tokenizers.Tokenizer.from_file(str(tokenizer_json))
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    enc = tok.encode_batch(texts)
    return {"input_ids": np.array([e.ids for e in enc], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64)}


@pytest.fixture(scope="module")
def text_source(tmp_path_factory) -> Path:
    """A source folder as Optimum lays it out: model.onnx beside tokenizer.json, plus validation data."""
    root = tmp_path_factory.mktemp("text-source")
    tokenizer_json = make_tokenizer(root / "tokenizer.json")
    model = masked_bert()
    feeds = tokenize(tokenizer_json, SENTENCES[:2])
    axes = {"input_ids": {0: "batch_size", 1: "sequence_length"}, "attention_mask": {0: "batch_size", 1: "sequence_length"},
            "embedding": {0: "batch_size"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter, as Optimum-era files were made
        torch.onnx.export(model, (torch.from_numpy(feeds["input_ids"]), torch.from_numpy(feeds["attention_mask"])),
                          str(root / "model.onnx"), input_names=["input_ids", "attention_mask"],
                          output_names=["embedding"], dynamic_axes=axes, opset_version=17, dynamo=False)
    val = tokenize(tokenizer_json, SENTENCES * 3)
    np.savez(root / "validation.npz", **val)
    return root


@pytest.fixture(scope="module")
def text_bundle(text_source, tmp_path_factory, run_cli) -> Path:
    out = tmp_path_factory.mktemp("text-bundles") / "enc-1"
    result = run_cli("convert", text_source / "model.onnx", "--name", "enc", "--version", "1", "--out", out,
                     "--task", "embedding", "--tokenizer", text_source / "tokenizer.json",
                     "--validation", text_source / "validation.npz")
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def text_model(text_bundle):
    return load(text_bundle, threads=1)


def test_the_bundle_carries_the_tokenizer_and_named_dimensions(text_bundle, text_source, run_cli):
    manifest = json.loads((text_bundle / "manifest.json").read_text())
    tok = manifest["tokenizer"]
    assert tok["file"]["path"] == "tokenizer.json"
    assert (text_bundle / "tokenizer.json").read_bytes() == (text_source / "tokenizer.json").read_bytes()
    assert tok["inputs"] == {"input_ids": "input_ids", "attention_mask": "attention_mask"}
    inputs = {t["name"]: t for t in manifest["inputs"]}
    # Optimum's batch_size / sequence_length are recorded as the canonical batch / sequence.
    assert inputs["input_ids"]["dim_names"] == ["batch", "sequence"] == inputs["attention_mask"]["dim_names"]
    assert inputs["input_ids"]["shape"] == [None, None]
    assert manifest["outputs"][0]["dim_names"][0] == "batch"  # the output's batch_size follows the inputs' rename
    result = run_cli("inspect", text_bundle, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["files_checked"] == 3  # samples, tokenizer, the artifact


def test_inspect_and_load_refuse_a_modified_tokenizer(text_bundle, tmp_path, run_cli):
    copy = tmp_path / "enc-1"
    shutil.copytree(text_bundle, copy)
    path = copy / "tokenizer.json"
    path.write_text(path.read_text().replace('"dog"', '"cow"'))
    result = run_cli("inspect", copy)
    assert result.exit_code != 0 and "tokenizer.json" in result.output and "Traceback" not in result.output
    with pytest.raises(IntegrityError, match="tokenizer.json"):
        load(copy)


def test_a_tokenizer_beside_the_source_is_picked_up(text_source, tmp_path, run_cli):
    out = tmp_path / "enc-auto"
    result = run_cli("convert", text_source / "model.onnx", "--name", "enc", "--version", "2", "--out", out,
                     "--task", "embedding", "--validation", text_source / "validation.npz")
    assert result.exit_code == 0, result.output
    assert json.loads((out / "manifest.json").read_text())["tokenizer"]["file"]["path"] == "tokenizer.json"


def test_a_tokenizer_for_a_model_without_token_inputs_is_refused(tmp_path, run_cli, text_source):
    from onnx import TensorProto, helper, save_model

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])])
    source = tmp_path / "relu.onnx"
    save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(source))
    result = run_cli("convert", source, "--name", "m", "--version", "1", "--out", tmp_path / "m",
                     "--tokenizer", text_source / "tokenizer.json")
    assert result.exit_code != 0 and "input_ids" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "m").exists()


def test_predict_on_raw_text_equals_predict_on_token_ids(text_model, text_source):
    texts = ["the cat sat on the mat", "a dog", "the big red house under a tree"]
    by_ids = text_model.predict(tokenize(text_source / "tokenizer.json", texts))["embedding"]
    for given in (texts, {"text": texts}, np.array(texts)):
        np.testing.assert_allclose(text_model.predict(given)["embedding"], by_ids, rtol=1e-5, atol=1e-6)
    one = text_model.predict("a dog")["embedding"]
    np.testing.assert_allclose(one[0], by_ids[1], rtol=1e-5, atol=1e-6)  # padding does not change an embedding


def test_token_inputs_of_different_lengths_are_a_clear_error(text_model):
    ids, mask = np.ones((2, 7), dtype=np.int64), np.ones((2, 9), dtype=np.int64)
    with pytest.raises(DataError, match=r"'input_ids' and 'attention_mask' share the dynamic dimension 'sequence'.*7 and 9"):
        text_model.predict({"input_ids": ids, "attention_mask": mask})


@pytest.fixture(scope="module")
def text_server(text_model):
    daemon = Daemon(ServeConfig(port=0))
    daemon.holder.swap(text_model)
    daemon.start()
    yield Client(daemon.url)
    daemon.stop()


def test_serve_accepts_raw_text(text_server, text_model):
    texts = ["the cat sat on the mat", "a dog ran fast"]
    status, body = text_server.post("/v2/models/enc/infer",
                                    {"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": texts}]})
    assert status == 200, body
    out = body["outputs"][0]
    assert out["name"] == "embedding" and out["shape"] == [2, HIDDEN]
    np.testing.assert_allclose(np.array(out["data"]).reshape(2, HIDDEN), text_model.predict(texts)["embedding"],
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("inputs,expect", [
    ([{"name": "input_ids", "shape": [1, 7], "datatype": "INT64", "data": [2] * 7},
      {"name": "attention_mask", "shape": [1, 9], "datatype": "INT64", "data": [1] * 9}], "share the dynamic dimension 'sequence'"),
    ([{"name": "text", "shape": [1], "datatype": "FP32", "data": [1.0]}], "send it as BYTES"),
    ([{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["a"]},
      {"name": "input_ids", "shape": [1, 3], "datatype": "INT64", "data": [2, 4, 3]}], "unknown input(s) 'text'"),
])
def test_serve_answers_400_json_for_bad_text_requests(text_server, inputs, expect):
    status, body = text_server.post("/v2/models/enc/infer", {"inputs": inputs})
    assert status == 400, body
    assert expect in body["error"]


def test_older_manifests_without_names_still_read():
    from edgeml.schema import TensorSpec

    old = TensorSpec.from_dict({"name": "x", "dtype": "float32", "shape": [None, 4]})
    assert old.dim_names is None and old.to_dict() == {"name": "x", "dtype": "float32", "shape": [None, 4]}
    named = TensorSpec.from_dict({"name": "ids", "dtype": "int64", "shape": ["batch", "sequence"]})
    assert named.shape == [None, None] and named.dim_names == ["batch", "sequence"]
    assert TensorSpec.from_dict(named.to_dict()) == named


def test_the_device_imports_tokenizers_only_when_a_text_bundle_gets_raw_text(text_bundle):
    import subprocess
    import sys

    code = ("import sys\nfrom edgeml.runtime import load\nm = load(sys.argv[1], threads=1)\n"
            "before = 'tokenizers' in sys.modules\nm.predict(['a dog'])\nprint(before, 'tokenizers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(text_bundle)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True"]


def masked_bert() -> MaskedBert:
    torch.manual_seed(0)
    return MaskedBert(len(WORDS) + 4).eval()


def test_a_pytorch_text_model_gets_named_dimensions(text_source, tmp_path, run_cli):
    out = tmp_path / "enc-pt"
    result = run_cli("convert", "test_text_models:masked_bert", "--name", "enc", "--version", "3", "--out", out,
                     "--input", "input_ids:int64:?x?", "--input", "attention_mask:int64:?x?", "--task", "embedding",
                     "--tokenizer", text_source / "tokenizer.json", "--validation", text_source / "validation.npz")
    assert result.exit_code == 0, result.output
    inputs = json.loads((out / "manifest.json").read_text())["inputs"]
    assert [t["dim_names"] for t in inputs] == [["batch", "sequence"], ["batch", "sequence"]]
    model = load(out, threads=1)
    with pytest.raises(DataError, match="share the dynamic dimension 'sequence'"):
        model.predict({"input_ids": np.ones((1, 4), np.int64), "attention_mask": np.ones((1, 5), np.int64)})
