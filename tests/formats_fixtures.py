"""Tiny models built in code for the TFLite/OpenVINO/Keras conversion tests (nothing downloaded)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from edgeml.cli import cli


def torch_cnn(dirpath: Path) -> Path:
    """An ExportedProgram of a 2-conv CNN on 1x8x8 inputs with a dynamic batch axis."""
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 8, 3, padding=1, stride=2), torch.nn.ReLU(),
        torch.nn.Flatten(), torch.nn.Linear(8 * 4 * 4, 5),
    ).eval()
    program = torch.export.export(model, (torch.randn(2, 1, 8, 8),), dynamic_shapes=({0: torch.export.Dim.DYNAMIC},))
    path = dirpath / "cnn.pt2"
    torch.export.save(program, str(path))
    return path


def image_data(dirpath: Path, n: int, name: str = "calib.npz", key: str = "input", shape=(1, 8, 8)) -> Path:
    path = dirpath / name
    np.savez(path, **{key: np.random.default_rng(n).standard_normal((n, *shape)).astype(np.float32)})
    return path


def digits_mlp(dirpath: Path) -> tuple[Path, Path]:
    """A StandardScaler + MLPClassifier pipeline on sklearn's digits, and labelled calibration data."""
    import joblib
    from sklearn.datasets import load_digits
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float32)
    pipe = make_pipeline(StandardScaler(), MLPClassifier((32,), max_iter=300, random_state=0)).fit(X[:1000], y[:1000])
    path = dirpath / "mlp.joblib"
    joblib.dump(pipe, path)
    data = dirpath / "digits.npz"
    np.savez(data, input=X[1000:1400], label=y[1000:1400])
    return path, data


def random_forest(dirpath: Path) -> Path:
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier

    X, y = load_iris(return_X_y=True)
    path = dirpath / "rf.joblib"
    joblib.dump(RandomForestClassifier(n_estimators=3, max_depth=3, random_state=0).fit(X.astype(np.float32), y), path)
    return path


def keras_cnn(dirpath: Path) -> Path:
    """A functional Keras CNN on 8x8x1 (NHWC) inputs named `image`."""
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(4, 3, activation="relu")(inp)
    x = keras.layers.Flatten()(x)
    out = keras.layers.Dense(3, activation="softmax")(x)
    path = dirpath / "model.keras"
    keras.Model(inp, out).save(path)
    return path


def run_convert(*args: str) -> tuple[int, str, dict | None]:
    """Run `edgeml convert ... --json`; return (exit code, output, parsed JSON summary or None)."""
    result = CliRunner().invoke(cli, ["convert", *args, "--json"])
    summary = None
    if result.exit_code == 0:
        text = result.output
        summary, _ = json.JSONDecoder().raw_decode(text[text.index("{"):])
    return result.exit_code, result.output, summary


def artifacts(summary: dict) -> dict[str, dict]:
    return {f"{a['format']}/{a['precision']}": a for a in summary["artifacts"]}
