"""Train the two example models of the quickstart into a directory (scikit-learn's bundled data only).

    python examples/make_models.py OUT_DIR

Writes: digits.pt2 (a PyTorch CNN on 8x8 digits, torch.export format), digits_calibration.npz,
digits_validation.npz, customers.joblib (a scikit-learn Pipeline over numeric and string columns),
customers.csv.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np


def digits_cnn(out: Path) -> None:
    import torch
    from sklearn.datasets import load_digits
    from torch import nn

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 16, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    Xt, yt = torch.from_numpy(X[:1400]), torch.from_numpy(y[:1400])
    for _ in range(10):
        for i in range(0, len(Xt), 64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(Xt[i:i + 64]), yt[i:i + 64]).backward()
            opt.step()
    model.eval()
    program = torch.export.export(model, (Xt[:2],), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, out / "digits.pt2")
    np.savez(out / "digits_calibration.npz", x=X[:600])
    np.savez(out / "digits_validation.npz", x=X[1400:], label=y[1400:])
    with torch.no_grad():
        acc = (model(torch.from_numpy(X[1400:])).argmax(1).numpy() == y[1400:]).mean()
    print(f"digits CNN: test accuracy {acc:.3f} -> {out / 'digits.pt2'}")


def customers_pipeline(out: Path) -> None:
    import joblib
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.default_rng(0)
    n = 600
    df = pd.DataFrame({"age": rng.normal(40, 12, n).round(), "monthly spend": rng.gamma(2, 30, n).round(2),
                       "plan": rng.choice(["basic", "plus", "pro"], n), "region": rng.choice(["north", "south"], n)})
    df.loc[rng.random(n) < 0.1, "age"] = np.nan
    churn = ((df["monthly spend"] < 40) & (df["plan"] == "basic")) | (rng.random(n) < 0.1)
    pre = ColumnTransformer([
        ("numeric", Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]), ["age", "monthly spend"]),
        ("categorical", OneHotEncoder(handle_unknown="ignore"), ["plan", "region"]),
    ])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe = Pipeline([("pre", pre), ("clf", MLPClassifier((32,), max_iter=400, random_state=0))]).fit(df, churn.astype(int))
    joblib.dump(pipe, out / "customers.joblib")
    df.assign(label=churn.astype(int)).to_csv(out / "customers.csv", index=False)
    print(f"customers pipeline: train accuracy {pipe.score(df, churn.astype(int)):.3f} -> {out / 'customers.joblib'}")


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "edgeml-quickstart")
    target.mkdir(parents=True, exist_ok=True)
    digits_cnn(target)
    customers_pipeline(target)
