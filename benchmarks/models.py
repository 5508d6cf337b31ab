"""Models shared by the benchmarks: a small 3x96x96 CNN and a CNN trained on scikit-learn's digits."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _block(cin: int, cout: int):
    from torch import nn

    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2))


def small_cnn():
    """The benchmark CNN for a 3x96x96 input: a stride-2 stem (as MobileNet/ResNet start) and three
    conv blocks (conv-BN-ReLU-pool) of 64, 128 and 256 channels, global pooling, a linear head."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 32, 3, stride=2, padding=1), nn.ReLU(), _block(32, 64), _block(64, 128),
                          _block(128, 256), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(256, 10))
    return model.eval()


def small_cnn_full_resolution():
    """A variant whose first block convolves the full 96x96 image with 3 input channels: the int8
    kernels gain least there (K = 27), so this one shows the low end of int8's speed-up."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(_block(3, 32), _block(32, 64), _block(64, 128), _block(128, 128),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 10))
    return model.eval()


class DigitsCNN:
    """Factory for the digits CNN (1x8x8 input), trained by `train_digits_cnn`."""

    @staticmethod
    def build():
        import torch
        from torch import nn

        return nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 16, 128), nn.ReLU(), nn.Linear(128, 10),
        )


def digits_split():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(X))
    train, test = order[:1400], order[1400:]
    return X[train], y[train], X[test], y[test]


def train_digits_cnn(epochs: int = 12):
    import torch

    X, y, _, _ = digits_split()
    torch.manual_seed(0)
    model = DigitsCNN.build()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    for _ in range(epochs):
        perm = torch.randperm(len(Xt))
        for i in range(0, len(Xt), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(Xt[idx]), yt[idx]).backward()
            opt.step()
    return model.eval()


def save_exported(model, example: np.ndarray, path: Path) -> Path:
    """Save as a torch.export ExportedProgram with a dynamic batch axis (what `edgeml convert` takes)."""
    import torch

    x = torch.from_numpy(example)
    program = torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, path)
    return path
