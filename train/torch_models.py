"""PyTorch MLP and small CNN behind the scikit-learn estimator API.

Estimators take a 2-D float matrix (images flattened) so search, CV and permutation importance work
unchanged; the CNN reshapes to its image shape. Training keeps the weights of the best epoch on a
validation split and stops after `patience` epochs without improvement. Standardisation and NaN
imputation live inside the module, so they travel in the exported graph. Classifiers output class
probabilities (softmax); regressors output the prediction in target units.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

from edgeml.errors import UsageError

from .options import Device, TaskKind, TrainOptions

DEFAULT_EPOCHS = 60


class TorchEstimator(BaseEstimator):
    def __init__(self, arch: str = "mlp", hidden: int = 64, channels: int = 16, lr: float = 3e-3, weight_decay: float = 1e-5,
                 epochs: int = DEFAULT_EPOCHS, batch_size: int = 64, patience: int = 5, val_fraction: float = 0.15,
                 image_shape: tuple[int, ...] | None = None, device: str = "cpu", threads: int = 1, seed: int = 0) -> None:
        self.arch, self.hidden, self.channels, self.lr, self.weight_decay = arch, hidden, channels, lr, weight_decay
        self.epochs, self.batch_size, self.patience, self.val_fraction = epochs, batch_size, patience, val_fraction
        self.image_shape, self.device, self.threads, self.seed = image_shape, device, threads, seed

    # --- scikit-learn API -------------------------------------------------------------------
    def fit(self, X: Any, y: Any) -> "TorchEstimator":
        import torch

        torch.set_num_threads(self.threads)
        torch.manual_seed(self.seed)
        X = np.asarray(X, dtype=np.float32)
        self.n_features_in_ = X.shape[1]
        targets = self._encode(np.asarray(y))
        device = torch.device(self.device)
        self.module_ = self._build(torch, X).to(device)
        self.history_ = _train(torch, self.module_, X, targets, self, device, self._loss(torch))
        self.module_ = self.module_.cpu().eval()
        return self

    def _forward(self, X: Any) -> np.ndarray:
        import torch

        X = np.ascontiguousarray(np.asarray(X, dtype=np.float32))
        with torch.no_grad():
            return self.module_(torch.from_numpy(X.reshape(len(X), *self.input_shape))).numpy()

    # --- export -----------------------------------------------------------------------------
    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample as the exported module takes it."""
        return tuple(self.image_shape) if self.arch == "cnn" else (self.n_features_in_,)

    def export(self, path: Any) -> None:
        """Save the module as a torch.export ExportedProgram with a dynamic batch axis."""
        import torch

        example = torch.zeros((2, *self.input_shape), dtype=torch.float32)
        program = torch.export.export(self.module_, (example,), dynamic_shapes=({0: torch.export.Dim("batch")},))
        torch.export.save(program, str(path))

    def _build(self, torch: Any, X: np.ndarray) -> Any:
        from .torch_nets import NETS

        if self.arch == "cnn" and not self.image_shape:
            raise UsageError("the cnn model needs image data (e.g. --dataset digits); use mlp for tabular data")
        return NETS[self.arch](X, self)


class TorchClassifier(ClassifierMixin, TorchEstimator):
    def _encode(self, y: np.ndarray) -> np.ndarray:
        self.classes_, index = np.unique(y, return_inverse=True)
        self.n_outputs_ = len(self.classes_)
        return index.astype(np.int64)

    def _loss(self, torch: Any) -> Any:
        return lambda out, t: torch.nn.functional.nll_loss(torch.log(out.clamp_min(1e-7)), t)

    def predict_proba(self, X: Any) -> np.ndarray:
        return self._forward(X)

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[self._forward(X).argmax(axis=1)]


class TorchRegressor(RegressorMixin, TorchEstimator):
    def _encode(self, y: np.ndarray) -> np.ndarray:
        y = y.astype(np.float32)
        self.y_mean_, self.y_std_ = float(y.mean()), float(y.std() or 1.0)
        self.n_outputs_ = 1
        return y.reshape(-1, 1)

    def _loss(self, torch: Any) -> Any:
        return lambda out, t: torch.nn.functional.mse_loss(out / self.y_std_, t / self.y_std_)

    def predict(self, X: Any) -> np.ndarray:
        return self._forward(X).reshape(-1)


def make_estimator(arch: str, task: TaskKind, options: TrainOptions) -> TorchEstimator:
    cls = TorchClassifier if task == TaskKind.CLASSIFICATION else TorchRegressor
    if options.device == Device.CUDA:
        import torch

        if not torch.cuda.is_available():
            raise UsageError("--device cuda: no CUDA device is available to torch here; use --device cpu")
    return cls(arch=arch, epochs=options.epochs or DEFAULT_EPOCHS, device=options.device.value, seed=options.seed)


def _train(torch: Any, module: Any, X: np.ndarray, y: np.ndarray, est: TorchEstimator, device: Any, loss_fn: Any) -> list[dict]:
    """Mini-batch Adam with early stopping on a held-out split; restores the best epoch's weights."""
    rng = np.random.default_rng(est.seed)
    order = rng.permutation(len(X))
    n_val = max(1, int(len(X) * est.val_fraction)) if len(X) >= 10 else 0
    val, fit = order[:n_val], order[n_val:]
    shape = (-1, *est.input_shape)
    Xf, yf = torch.from_numpy(X[fit].reshape(shape)).to(device), torch.from_numpy(y[fit]).to(device)
    Xv, yv = torch.from_numpy(X[val].reshape(shape)).to(device), torch.from_numpy(y[val]).to(device)
    opt = torch.optim.Adam(module.parameters(), lr=est.lr, weight_decay=est.weight_decay)
    best, best_state, waited, history = float("inf"), None, 0, []
    for epoch in range(est.epochs):
        module.train()
        for idx in torch.from_numpy(rng.permutation(len(Xf))).split(est.batch_size):
            opt.zero_grad()
            loss_fn(module(Xf[idx]), yf[idx]).backward()
            opt.step()
        module.eval()
        with torch.no_grad():
            val_loss = float(loss_fn(module(Xv), yv)) if n_val else float(loss_fn(module(Xf), yf))
        history.append({"epoch": epoch + 1, "val_loss": val_loss})
        if val_loss < best - 1e-6:
            best, waited = val_loss, 0
            best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        else:
            waited += 1
            if waited >= est.patience:
                break
    if best_state is not None:
        module.load_state_dict(best_state)
    return history
