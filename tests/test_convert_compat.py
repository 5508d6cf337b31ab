"""The format support table: computed from the exporters' rules, printed by --list-formats [--json],
equal to docs/convert.md, and the same rules refuse a conversion before any work."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import joblib
import numpy as np
import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs" / "convert.md"


def _listed(run_cli, *flags: str) -> dict[tuple[str, str, str], dict]:
    result = run_cli("convert", *flags)
    assert result.exit_code == 0, result.output
    return {(c["source"], c["format"], c["precision"]): c for c in json.loads(result.stdout)}


def test_list_formats_json_gives_every_combination_with_its_rules(run_cli):
    table = _listed(run_cli, "--list-formats", "--json")
    assert table == _listed(run_cli, "--json", "--list-formats")  # flag order does not matter
    assert len(table) == 5 * 3 * 3  # run dirs delegate; onnx, booster, pytorch, sklearn, keras
    assert any("ai.onnx.ml" in rule for rule in table["booster", "openvino", "fp32"]["limits"])
    # The model-dependent rules the exporters check, where they can bite:
    assert any("ai.onnx.ml" in rule for rule in table["sklearn", "tflite", "fp32"]["limits"])
    assert any("ai.onnx.ml" in rule for rule in table["sklearn", "openvino", "int8"]["limits"])
    assert any("Conv/MatMul/Gemm" in rule for rule in table["sklearn", "onnx", "fp16"]["limits"])
    assert table["sklearn", "onnx", "fp32"]["limits"] == []
    assert table["keras", "tflite", "int8"]["limits"] == []  # straight from TF, no onnx2tf
    assert table["pytorch", "openvino", "fp16"]["limits"] == []  # standard ONNX only


def test_docs_table_is_the_computed_one():
    from edgeml.convert.compat import markdown_table

    text = DOCS.read_text()
    section = text[text.index("## Compatibility"):]
    start = section.index("| source |")
    assert section[start:section.index("\n\n", start)] == markdown_table()


@pytest.fixture
def fake_format(tmp_path, monkeypatch):
    """A registered exporter with an outright refusal and a missing precision."""
    (tmp_path / "edgeml_fake_exporter.py").write_text(
        "from edgeml.convert.exporters.base import Refusal, RuleBasedExporter\n"
        "from edgeml.convert.options import Precision\n"
        "class Fake(RuleBasedExporter):\n"
        "    format, backend, description, extra = 'fake', 'onnxruntime', 'test format', 'convert'\n"
        "    precisions = (Precision.FP32, Precision.FP16)\n"
        "    refusals = (Refusal('fake cannot hold scikit-learn models', kinds=('sklearn',)),)\n"
        "EXPORTER = Fake()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from edgeml.convert import exporters

    monkeypatch.setitem(exporters.EXPORTER_MODULES, "fake", "edgeml_fake_exporter")
    yield "fake"
    sys.modules.pop("edgeml_fake_exporter", None)


def test_refused_combinations_are_listed_with_their_reason(run_cli, fake_format):
    table = _listed(run_cli, "--list-formats", "--json")
    assert table["sklearn", "fake", "fp32"]["reason"] == "fake cannot hold scikit-learn models"
    assert table["onnx", "fake", "int8"] == {"source": "onnx", "format": "fake", "precision": "int8", "supported": False,
                                             "reason": "fake has no int8 export", "limits": []}
    assert table["onnx", "fake", "fp16"]["supported"]
    text = run_cli("convert", "--list-formats").stdout
    assert "no: fake cannot hold" in text


def test_a_refused_combination_fails_before_the_model_is_loaded(run_cli, fake_format, tmp_path):
    for source, precision, reason in (("model.joblib", "fp32", "fake cannot hold scikit-learn models"),
                                      ("model.onnx", "int8", "fake has no int8 export")):
        (tmp_path / source).write_bytes(b"never read")  # refused before it is opened
        result = run_cli("convert", tmp_path / source, "--name", "m", "--version", "1", "--to", f"onnx,{fake_format}",
                         "--precision", precision, "--out", tmp_path / "b")
        assert result.exit_code != 0
        assert result.error_lines == [f"Error: {fake_format}/{precision} is not supported for this model: {reason}"]
        assert not (tmp_path / "b").exists()


def test_a_model_breaking_a_listed_rule_is_refused_naming_its_operator(run_cli, tmp_path):
    from sklearn.tree import DecisionTreeClassifier

    X = np.random.default_rng(0).normal(size=(60, 3)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        joblib.dump(DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, X[:, 0] > 0), tmp_path / "tree.joblib")
    result = run_cli("convert", tmp_path / "tree.joblib", "--name", "t", "--version", "1", "--to", "openvino",
                     "--out", tmp_path / "b")
    assert result.exit_code != 0 and len(result.error_lines) == 1
    line = result.error_lines[0]
    assert line.startswith("Error: openvino/fp32 is not supported for this model: the graph uses TreeEnsembleClassifier")
    assert not (tmp_path / "b").exists()
