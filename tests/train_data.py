"""Tiny data files for the `edgeml train` tests (built in code, nothing downloaded)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

WORDS = ["good", "bad", "great", "awful", "fine", "poor", "nice", "slow", "fast", "cheap"]


def tabular_csv(path: Path, n: int = 240, seed: int = 0, text: bool = False) -> Path:
    """Binary target `y` from numbers, a city and a group; missing values and duplicate rows included."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n),
                       "city": rng.choice(["paris", "oslo", "rome"], n), "group": rng.choice(["g1", "g2"], n)})
    score = df.x2 + (df.city == "oslo") * 1.0 + rng.normal(scale=0.4, size=n)
    if text:
        df["review"] = [" ".join(rng.choice(WORDS, 5)) for _ in range(n)]
        score = score + df.review.str.contains("good") * 1.5
    df["y"] = (score > 0.5).astype(int)
    df.loc[::9, "x1"] = np.nan
    df.loc[::13, "city"] = None
    df = pd.concat([df, df.iloc[:4]], ignore_index=True)  # 4 exact duplicates
    df.to_csv(path, index=False)
    return path


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())
