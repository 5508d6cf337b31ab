"""The preprocessing half of a scikit-learn model: a ColumnTransformer that skl2onnx converts.

numeric  -> median imputation + standardisation
category -> one-hot (unknown categories ignored); missing strings arrive as ""
text     -> TF-IDF on words (lowercase=False: ONNX Runtime's StringNormalizer needs OS locales that
            small devices rarely have, so text is used as given; lowercase it in the data if wanted)

`edgeml convert` turns it into one graph input per raw column, so devices feed raw values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .data import _is_numeric

TEXT_MIN_WORDS = 3.0  # mean words per value above which a string column is free text
TEXT_MIN_UNIQUE = 0.5  # ... and at least this fraction of its values distinct
TFIDF_MAX_FEATURES = 500


@dataclass(frozen=True)
class ColumnPlan:
    numeric: list[str]
    categorical: list[str]
    text: list[str]

    def describe(self) -> dict[str, list[str]]:
        return {"numeric": self.numeric, "categorical": self.categorical, "text": self.text}


def plan_columns(frame: Any) -> ColumnPlan:
    numeric, categorical, text = [], [], []
    for col in frame.columns:
        if _is_numeric(frame[col]):
            numeric.append(col)
        elif _is_text(frame[col]):
            text.append(col)
        else:
            categorical.append(col)
    return ColumnPlan(numeric, categorical, text)


def _is_text(series: Any) -> bool:
    values = series.astype(str)
    words = values.str.split().str.len().mean()
    return bool(words >= TEXT_MIN_WORDS and values.nunique() >= TEXT_MIN_UNIQUE * len(values))


def build_preprocessor(plan: ColumnPlan) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    parts: list[tuple[str, Any, Any]] = []
    if plan.numeric:
        parts.append(("num", Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]), plan.numeric))
    if plan.categorical:
        parts.append(("cat", OneHotEncoder(handle_unknown="ignore"), plan.categorical))
    for col in plan.text:  # TfidfVectorizer takes one column, given by name (1-D)
        parts.append((f"text_{col}", TfidfVectorizer(lowercase=False, max_features=TFIDF_MAX_FEATURES), col))
    return ColumnTransformer(parts, sparse_threshold=0.0)
