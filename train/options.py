"""Typed options for `edgeml train`."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path


class TaskKind(str, Enum):
    CLASSIFICATION = "classification"
    REGRESSION = "regression"
    CLUSTERING = "clustering"


class SearchKind(str, Enum):
    NONE = "none"  # fit the default parameters (still cross-validated)
    GRID = "grid"  # sklearn GridSearchCV over the model's grid
    RANDOM = "random"  # sklearn RandomizedSearchCV, --trials candidates
    BAYES = "bayes"  # Optuna TPE, --trials trials


class ExplainKind(str, Enum):
    """--explain: how the report ranks features."""

    PERMUTATION = "permutation"  # sklearn permutation importance on the test split (the default)
    SHAP = "shap"  # mean |SHAP value|; needs the shap package, several times slower
    NONE = "none"  # no importance section


class Device(str, Enum):
    CPU = "cpu"
    CUDA = "cuda"


@dataclass
class TrainOptions:
    out: Path
    model: str
    data: Path | None = None
    dataset: str | None = None
    target: str | None = None
    task: TaskKind | None = None  # None = inferred from the target
    search: SearchKind = SearchKind.NONE
    trials: int = 20
    cv: int = 5
    test_size: float = 0.2
    sensitive: str | None = None
    bias_threshold: float = 0.1
    positive_label: str | None = None  # bias: the favourable class [default: the last class]
    seed: int = 0
    device: Device = Device.CPU
    epochs: int | None = None  # torch models: override the model's default
    n_jobs: int = -1
    ray: str | None = None  # Ray cluster address for search trials (--ray ADDRESS|auto); None = local
    mlflow: str | None = None  # tracking URI (--mlflow)
    register: str | None = None  # registered model name (--register, needs --mlflow)
    explain: ExplainKind = ExplainKind.PERMUTATION
    robustness: bool = True  # accuracy under input perturbations in the report
    force: bool = False
    holdout_rows: int = 0  # >0: the first N rows of --data are the test split, as given (`--from-fleet`)

    @property
    def run_name(self) -> str:
        return self.out.name
