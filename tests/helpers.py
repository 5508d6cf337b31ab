"""Builders of tiny models and data files for the tests (nothing downloaded)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class DigitsCNN:
    pt2: Path
    torchscript: Path
    weights: Path
    factory: str  # package.module:factory
    calibration: Path  # npz keyed "input"
    validation: Path  # npz with "label"
    accuracy: float


@dataclass
class Tabular:
    model: Path
    csv: Path
    columns: list[str]


def digits_data():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return (X / 16.0).astype(np.float32).reshape(-1, 1, 8, 8), y.astype(np.int64)


def train_digits_cnn(root: Path, epochs: int = 8) -> DigitsCNN:
    import torch

    from tiny_models import DigitsNet

    X, y = digits_data()
    torch.manual_seed(0)
    model = DigitsNet()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    Xt, yt = torch.from_numpy(X[:1400]), torch.from_numpy(y[:1400])
    for _ in range(epochs):
        for i in range(0, len(Xt), 64):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(Xt[i:i + 64]), yt[i:i + 64]).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = float((model(torch.from_numpy(X[1400:])).argmax(1).numpy() == y[1400:]).mean())
    program = torch.export.export(model, (Xt[:2],), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, root / "digits.pt2")
    torch.jit.script(model).save(str(root / "digits.ts"))
    torch.save(model.state_dict(), root / "digits.weights.pt")
    np.savez(root / "calibration.npz", input=X[:600])
    np.savez(root / "validation.npz", input=X[1400:], label=y[1400:])
    return DigitsCNN(root / "digits.pt2", root / "digits.ts", root / "digits.weights.pt",
                     "tiny_models:digits_net", root / "calibration.npz", root / "validation.npz", acc)


def tabular_frame(n: int = 400, seed: int = 0):
    import pandas as pd

    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "age": rng.normal(40, 10, n),
        "income level": rng.normal(5, 2, n),  # a space: skl2onnx renames it, the manifest keeps it
        "city": rng.choice(["paris", "oslo", "rome"], n),
    })
    df.loc[::7, "age"] = np.nan
    y = ((df["income level"] > 5) ^ (df["city"] == "oslo")).astype(int)
    return df, y


def make_tabular_pipeline(root: Path, final=None) -> Tabular:
    import joblib
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    df, y = tabular_frame()
    pre = ColumnTransformer([
        ("num", Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler())]), ["age", "income level"]),
        ("cat", OneHotEncoder(handle_unknown="ignore"), ["city"]),
    ])
    final = final or MLPClassifier((16,), max_iter=300, random_state=0)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe = Pipeline([("pre", pre), ("clf", final)]).fit(df, y)
    joblib.dump(pipe, root / "pipeline.joblib")
    data = df.copy()
    data["label"] = y
    data.to_csv(root / "data.csv", index=False)
    return Tabular(root / "pipeline.joblib", root / "data.csv", list(df.columns))
