"""`edgeml predict --input FILE|DIR --output FILE`: chunked batch prediction to Parquet, CSV and .npz."""

from __future__ import annotations

import csv
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from click.testing import CliRunner

from edgeml.cli import cli
from edgeml.runtime import load
from runtime_fixtures import bundles, samples


def run(*args) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def _mlp_rows(n: int) -> np.ndarray:
    inputs, _ = samples(bundles().mlp)
    x = next(iter(inputs.values()))
    return np.resize(x, (n, *x.shape[1:])).astype(np.float32)  # many rows from the golden samples


def test_npz_to_parquet_in_chunks_matches_one_big_predict(tmp_path):
    b = bundles()
    model = load(b.mlp, precision="fp32")
    x = _mlp_rows(2500)
    np.savez(tmp_path / "in.npz", **{model.inputs[0].name: x})
    code, out = run("predict", b.mlp, "--precision", "fp32", "--input", tmp_path / "in.npz",
                    "--output", tmp_path / "out.parquet", "--chunk-size", 1000)
    assert code == 0, out
    assert "2500 row(s) from 1 file(s)" in out
    table = pq.read_table(tmp_path / "out.parquet")
    expected = model.predict({model.inputs[0].name: x})
    assert table.num_rows == 2500
    assert table.column("row").to_pylist() == list(range(2500))
    assert table.column("label").to_pylist() == expected["label"].tolist()
    probs = np.array(table.column("probabilities").to_pylist())  # one list column: the class scores
    np.testing.assert_allclose(probs, expected["probabilities"], rtol=1e-5, atol=1e-6)
    assert not list(tmp_path.glob(".out.parquet.partial*"))


def test_csv_and_parquet_inputs_stream_into_csv_and_npz(tmp_path):
    b = bundles()
    model = load(b.tabular)
    records = [{"age": 30.0 + i % 40, "income level": 1.0 + (i % 7), "city": ["oslo", "paris", "lima"][i % 3]}
               for i in range(300)]
    with open(tmp_path / "in.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["age", "income level", "city"])
        w.writeheader()
        w.writerows(records)
    code, out = run("predict", b.tabular, "--input", tmp_path / "in.csv", "--output", tmp_path / "out.csv",
                    "--chunk-size", 64)
    assert code == 0, out
    with open(tmp_path / "out.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    expected = model.predict(records)
    assert len(rows) == 300 and [r["label"] for r in rows] == [str(v) for v in expected["label"].tolist()]
    k = expected["probabilities"].shape[1]
    got = np.array([[float(r[f"probabilities[{i}]"]) for i in range(k)] for r in rows])
    np.testing.assert_allclose(got, expected["probabilities"], rtol=1e-5)

    pq.write_table(pa.table({c: [r[c] for r in records] for c in records[0]}), tmp_path / "in.parquet")
    code, out = run("predict", b.tabular, "--input", tmp_path / "in.parquet", "--output", tmp_path / "out.npz", "--json")
    assert code == 0, out
    assert json.loads(out)["rows"] == 300
    with np.load(tmp_path / "out.npz") as f:
        np.testing.assert_allclose(f["probabilities"], expected["probabilities"], rtol=1e-5)
        assert f["row"].tolist() == list(range(300))


def test_a_directory_of_files_is_one_result_with_the_source_of_each_row(tmp_path):
    b = bundles()
    model = load(b.mlp, precision="fp32")
    name = model.inputs[0].name
    x = _mlp_rows(30)
    (tmp_path / "in").mkdir()
    np.savez(tmp_path / "in" / "a.npz", **{name: x[:10]})
    np.savez(tmp_path / "in" / "b.npz", **{name: x[10:]})
    code, out = run("predict", b.mlp, "--precision", "fp32", "--input", tmp_path / "in", "--output", tmp_path / "o.parquet")
    assert code == 0, out
    table = pq.read_table(tmp_path / "o.parquet")
    assert table.column("source").to_pylist() == ["a.npz"] * 10 + ["b.npz"] * 20
    assert table.column("label").to_pylist() == model.predict({name: x})["label"].tolist()


def test_bad_input_midway_leaves_no_result_file_and_one_error_line(tmp_path):
    b = bundles()
    lines = ["age,income level,city"] + [f"{30 + i},2.0,oslo" for i in range(50)] + ["forty,2.0,oslo"]
    (tmp_path / "in.csv").write_text("\n".join(lines) + "\n")
    code, out = run("predict", b.tabular, "--input", tmp_path / "in.csv", "--output", tmp_path / "out.parquet",
                    "--chunk-size", 16)
    assert code != 0
    assert "Error:" in out and "line 52" in out and "'forty'" in out
    assert "Traceback" not in out
    assert list(tmp_path.iterdir()) == [tmp_path / "in.csv"]  # no result, no partial file


def test_unsupported_output_suffix_is_refused_before_any_work(tmp_path):
    b = bundles()
    code, out = run("predict", b.mlp, "--input", b.mlp / "samples.npz", "--output", tmp_path / "out.xlsx")
    assert code != 0 and "Error:" in out and ".parquet" in out
