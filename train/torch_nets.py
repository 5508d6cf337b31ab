"""The torch modules behind `mlp` and `cnn`, registered by architecture name (imported only with torch)."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from torch import nn


class Standardize(nn.Module):
    """(x - mean) / std with NaN replaced by the mean first; the statistics are buffers of the graph."""

    def __init__(self, mean: np.ndarray, std: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(np.where(std > 0, std, 1.0), dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.where(torch.isnan(x), self.mean, x)
        return (x - self.mean) / self.std


class Head(nn.Module):
    """Classifiers: softmax probabilities; regressors: the prediction back in target units."""

    def __init__(self, classify: bool, y_mean: float = 0.0, y_std: float = 1.0) -> None:
        super().__init__()
        self.classify, self.y_mean, self.y_std = classify, y_mean, y_std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(x, dim=1) if self.classify else x * self.y_std + self.y_mean


def _head(est: Any) -> Head:
    classify = hasattr(est, "classes_")
    return Head(classify, getattr(est, "y_mean_", 0.0), getattr(est, "y_std_", 1.0))


def mlp(X: np.ndarray, est: Any) -> nn.Module:
    mean, std = np.nanmean(X, axis=0), np.nanstd(X, axis=0)
    mean = np.nan_to_num(mean)
    return nn.Sequential(
        Standardize(mean, np.nan_to_num(std, nan=1.0)),
        nn.Linear(X.shape[1], est.hidden), nn.ReLU(),
        nn.Linear(est.hidden, est.hidden), nn.ReLU(),
        nn.Linear(est.hidden, est.n_outputs_), _head(est),
    )


def cnn(X: np.ndarray, est: Any) -> nn.Module:
    channels, height, width = est.image_shape
    c = est.channels
    mean, std = np.float32(np.nanmean(X)), np.float32(np.nanstd(X))
    return nn.Sequential(
        Standardize(np.array(mean), np.array(std)),
        nn.Conv2d(channels, c, 3, padding=1), nn.ReLU(),
        nn.Conv2d(c, 2 * c, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(2 * c * (height // 2) * (width // 2), 64), nn.ReLU(),
        nn.Linear(64, est.n_outputs_), _head(est),
    )


NETS: dict[str, Callable[[np.ndarray, Any], nn.Module]] = {"mlp": mlp, "cnn": cnn}
