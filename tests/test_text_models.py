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

from edgeml.errors import BundleError, DataError, IntegrityError  # noqa: E402
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
    # Nothing records the longest sequence: the source model was probed (its position table has 32 rows).
    assert tok["max_length"] is not None and tok["max_length"] <= MAX_POSITIONS
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


def test_a_tokenizer_beside_the_source_is_picked_up_and_makes_validation_data(text_source, tmp_path, run_cli):
    folder = tmp_path / "optimum-layout"
    shutil.copytree(text_source, folder)
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": MAX_POSITIONS}))
    out = tmp_path / "enc-auto"
    result = run_cli("convert", folder / "model.onnx", "--name", "enc", "--version", "2", "--out", out,
                     "--task", "embedding")  # no data: validated on tokenized random vocabulary
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["tokenizer"]["file"]["path"] == "tokenizer.json"
    assert manifest["tokenizer"]["max_length"] == MAX_POSITIONS  # model_max_length of tokenizer_config.json
    validation = manifest["artifacts"][0]["validation"]
    assert validation["passed"] and validation["samples"] == 32, validation
    model = load(out, threads=1)  # a text longer than the model's positions is truncated, not a crash
    assert model.predict(" ".join(["dog"] * 100))["embedding"].shape == (1, HIDDEN)


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


def test_fuzzed_text_requests_get_200_or_4xx_json_never_5xx(text_server):
    rng = np.random.default_rng(0)
    values = ["the cat", "", "dog " * 200, 3, None, ["a", "b"], "\u00e9\u4e2d\U0001f600", [[]], {"a": 1}, True]
    for _ in range(200):
        n = int(rng.integers(0, 4))
        data = [values[int(rng.integers(len(values)))] for _ in range(n)]
        shape = [int(rng.integers(0, 4)) for _ in range(int(rng.integers(0, 3)))]
        datatype = ["BYTES", "BYTES", "INT64", "FP32", "STRING"][int(rng.integers(5))]
        status, body = text_server.post("/v2/models/enc/infer",
                                        {"inputs": [{"name": "text", "shape": shape, "datatype": datatype, "data": data}]})
        assert status == 200 or (400 <= status < 500 and "error" in body), (shape, datatype, data, status, body)


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


@pytest.mark.parametrize("entry,error", [
    ({"file": {"path": "../tokenizer.json", "sha256": "0" * 64, "size": 1}, "inputs": {"input_ids": "ids"}}, IntegrityError),
    ({"file": {"path": "tokenizer.json", "sha256": "0" * 64, "size": 1}, "inputs": {"words": "ids"}}, BundleError),
    ({"file": {"path": "tokenizer.json", "sha256": "0" * 64, "size": 1}, "inputs": {"input_ids": "ids"},
      "max_length": 0}, BundleError),
])
def test_a_malformed_tokenizer_entry_is_refused(text_bundle, entry, error):
    from edgeml.manifest import Manifest

    doc = json.loads((text_bundle / "manifest.json").read_text())
    doc["tokenizer"] = entry
    with pytest.raises(error, match="tokenizer"):
        Manifest.from_dict(doc)


def test_a_device_installs_a_text_bundle_from_the_fleet_with_its_tokenizer(text_source, tmp_path_factory, run_cli, keys):
    """The installer downloads the tokenizer with the artifact; the device then answers raw text."""
    import urllib.request

    from fleet_fixtures import served_version, start_device, start_fleet, start_mosquitto, wait_until
    from test_fleet import assign, push

    root = tmp_path_factory.mktemp("text-fleet")
    bundle = root / "enc-5"
    result = run_cli("convert", text_source / "model.onnx", "--name", "enc", "--version", "5", "--out", bundle,
                     "--task", "embedding", "--sign-key", keys[0], "--validation", text_source / "validation.npz")
    assert result.exit_code == 0, result.output
    broker = start_mosquitto(tmp_path_factory.mktemp("text-broker"))
    fleet = start_fleet(root, keys, broker_url=broker.url)
    device = None
    try:
        assert push(fleet, bundle)[0] in (200, 201)
        device = start_device(root, "text-dev", fleet.broker_url, keys[1])
        wait_until(lambda: fleet.device(device.device_id), 30, "registration")
        assert assign(fleet, "enc", "5", device=device.device_id)[0] == 200
        wait_until(lambda: served_version(device, "enc") == "5", 60, "the text bundle installed")
        assert list(device.store.glob("models/enc/5/tokenizer.json"))
        body = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["the cat sat"]}]}
        req = urllib.request.Request(f"{device.url}/v2/models/enc/infer", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            out = json.loads(resp.read())["outputs"][0]
        assert out["shape"] == [1, HIDDEN]
    finally:
        if device is not None:
            device.proc.kill()
        fleet.proc.terminate()
        broker.stop()


def test_inspect_shows_the_tokenizer_entry(text_bundle, run_cli):
    result = run_cli("inspect", text_bundle)
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if x.startswith("tokenizer"))
    assert "tokenizer.json" in line and "input_ids -> input_ids" in line and "attention_mask -> attention_mask" in line
    assert f"max length {json.loads((text_bundle / 'manifest.json').read_text())['tokenizer']['max_length']}" in line
    assert "raw text input 'text'" in line


def test_serve_metadata_lists_the_raw_text_input_and_the_named_axes(text_server):
    status, meta = text_server.get("/v2/models/enc")
    assert status == 200, meta
    inputs = {t["name"]: t for t in meta["inputs"]}
    assert inputs["text"] == {"name": "text", "datatype": "BYTES", "shape": [-1],
                              "parameters": {"feeds": ["attention_mask", "input_ids"]}}
    for name in ("input_ids", "attention_mask"):
        assert inputs[name]["shape"] == [-1, -1] and inputs[name]["datatype"] == "INT64"
        assert inputs[name]["parameters"] == {"dim_names": ["batch", "sequence"]}  # one shared sequence axis
    assert meta["outputs"][0]["parameters"]["dim_names"][0] == "batch"


def test_validation_data_longer_than_the_model_accepts_is_one_error_line(text_source, tmp_path, run_cli):
    """The model's position table has 32 rows: 40-token validation data cannot run. The source reference
    fails inside onnxruntime; convert says so in one line naming the inputs, and writes nothing."""
    long = {"input_ids": np.full((4, 40), 4, dtype=np.int64), "attention_mask": np.ones((4, 40), dtype=np.int64)}
    np.savez(tmp_path / "long.npz", **long)
    out = tmp_path / "enc-long"
    result = run_cli("convert", text_source / "model.onnx", "--name", "enc", "--version", "9", "--out", out,
                     "--task", "embedding", "--tokenizer", text_source / "tokenizer.json",
                     "--validation", tmp_path / "long.npz")
    assert result.exit_code != 0 and "Traceback" not in result.output, result.output
    assert result.error_lines and len(result.error_lines) == 1, result.output
    assert "input_ids" in result.error_lines[0] and "[4, 40]" in result.error_lines[0], result.error_lines
    assert "input_ids holds sequences of 40 tokens, the model runs at most 32" in result.error_lines[0]
    assert not out.exists()
