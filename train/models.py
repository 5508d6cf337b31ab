"""The model zoo: registry name -> estimator factory per task and search space.

scikit-learn models are Pipeline(preprocessing, model) and are saved with joblib; PyTorch models
(mlp, cnn) wrap a torch module in a scikit-learn estimator so search, CV and evaluation treat every
model alike, and are saved as a torch.export ExportedProgram (.pt2).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Any, Callable

from edgeml.errors import UnsupportedModelError, UsageError

from .options import TaskKind, TrainOptions
from .space import Choice, FloatRange, IntRange, Space

C, R, K = TaskKind.CLASSIFICATION, TaskKind.REGRESSION, TaskKind.CLUSTERING
Factory = Callable[[TaskKind, TrainOptions], Any]


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    build: Factory
    tasks: frozenset[TaskKind]
    space: Space = field(default_factory=dict)
    framework: str = "sklearn"  # "sklearn": joblib Pipeline; "torch": .pt2
    requires: str | None = None  # optional module the model needs
    images_only: bool = False  # needs image-shaped data (e.g. --dataset digits)

    def available(self) -> bool:
        return self.requires is None or importlib.util.find_spec(self.requires) is not None


def _sk(module: str, cls: dict[TaskKind, str], **fixed: Any) -> Factory:
    def build(task: TaskKind, options: TrainOptions) -> Any:
        mod = importlib.import_module(module)
        kwargs = dict(fixed)
        if "random_state" in fixed:
            kwargs["random_state"] = options.seed
        return getattr(mod, cls[task])(**kwargs)

    return build


def _torch(arch: str) -> Factory:
    def build(task: TaskKind, options: TrainOptions) -> Any:
        from .torch_models import make_estimator

        return make_estimator(arch, task, options)

    return build


def _boosted(package: str, prefix: str) -> Factory:
    def build(task: TaskKind, options: TrainOptions) -> Any:
        mod = importlib.import_module(package)
        cls = getattr(mod, f"{prefix}Classifier" if task == C else f"{prefix}Regressor")
        return cls(random_state=options.seed, n_jobs=1)

    return build


def _svm(task: TaskKind, options: TrainOptions) -> Any:
    from sklearn.svm import SVC, SVR

    return SVC(probability=True, random_state=options.seed) if task == C else SVR()


TREE_SPACE: Space = {"max_depth": IntRange(2, 16), "min_samples_leaf": IntRange(1, 10)}
BOOST_SPACE: Space = {"n_estimators": IntRange(50, 300, log=True), "learning_rate": FloatRange(0.02, 0.3, log=True),
                      "max_depth": IntRange(2, 8)}

MODELS: dict[str, ModelSpec] = {m.name: m for m in [
    ModelSpec("logistic_regression", "logistic regression (scikit-learn)",
              _sk("sklearn.linear_model", {C: "LogisticRegression"}, max_iter=2000), frozenset({C}),
              {"C": FloatRange(0.01, 100.0, log=True)}),
    ModelSpec("linear_regression", "linear regression with L2 penalty (scikit-learn Ridge)",
              _sk("sklearn.linear_model", {R: "Ridge"}), frozenset({R}), {"alpha": FloatRange(0.001, 100.0, log=True)}),
    ModelSpec("decision_tree", "decision tree (scikit-learn)",
              _sk("sklearn.tree", {C: "DecisionTreeClassifier", R: "DecisionTreeRegressor"}, random_state=0),
              frozenset({C, R}), TREE_SPACE),
    ModelSpec("svm", "support vector machine, RBF kernel (scikit-learn SVC/SVR)",
              _svm, frozenset({C, R}),
              {"C": FloatRange(0.1, 100.0, log=True), "gamma": Choice(("scale", "auto"))}),
    ModelSpec("random_forest", "random forest (scikit-learn)",
              _sk("sklearn.ensemble", {C: "RandomForestClassifier", R: "RandomForestRegressor"}, random_state=0, n_estimators=100),
              frozenset({C, R}), {"n_estimators": IntRange(50, 300, log=True), **TREE_SPACE}),
    ModelSpec("gradient_boosting", "histogram gradient boosting (scikit-learn)",
              _sk("sklearn.ensemble", {C: "HistGradientBoostingClassifier", R: "HistGradientBoostingRegressor"}, random_state=0),
              frozenset({C, R}), {"max_iter": IntRange(50, 300, log=True), "learning_rate": FloatRange(0.02, 0.3, log=True),
                                  "max_leaf_nodes": IntRange(8, 63, log=True)}),
    ModelSpec("xgboost", "XGBoost (when installed)", _boosted("xgboost", "XGB"), frozenset({C, R}), BOOST_SPACE, requires="xgboost"),
    ModelSpec("lightgbm", "LightGBM (when installed)", _boosted("lightgbm", "LGBM"), frozenset({C, R}), BOOST_SPACE, requires="lightgbm"),
    ModelSpec("kmeans", "k-means clustering (scikit-learn)", _sk("sklearn.cluster", {K: "KMeans"}, random_state=0, n_init=10),
              frozenset({K}), {"n_clusters": IntRange(2, 10)}),
    ModelSpec("mlp", "PyTorch multilayer perceptron, early stopping on a validation split", _torch("mlp"), frozenset({C, R}),
              {"hidden": Choice((32, 64, 128)), "lr": FloatRange(1e-4, 1e-2, log=True), "weight_decay": FloatRange(1e-6, 1e-2, log=True)},
              framework="torch"),
    ModelSpec("cnn", "PyTorch small CNN for images (e.g. --dataset digits), early stopping", _torch("cnn"), frozenset({C}),
              {"channels": Choice((8, 16, 32)), "lr": FloatRange(1e-4, 1e-2, log=True)}, framework="torch", images_only=True),
]}


def get_model(name: str, task: TaskKind) -> ModelSpec:
    spec = MODELS.get(name)
    if spec is None:
        raise UsageError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    if not spec.available():
        raise UnsupportedModelError(f"model {name} needs the {spec.requires} package, which is not installed (pip install {spec.requires})")
    if task not in spec.tasks:
        fitting = [m.name for m in MODELS.values() if task in m.tasks]
        raise UsageError(f"model {name} does not do {task.value} (it does {', '.join(sorted(t.value for t in spec.tasks))}); "
                         f"for {task.value} choose from {', '.join(fitting)}")
    return spec
