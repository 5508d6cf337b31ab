"""Tiny PyTorch modules used by the tests; importable as `tiny_models:digits_net` factories."""

from __future__ import annotations

import torch


class DigitsNet(torch.nn.Module):
    """Two conv blocks and an MLP head for 1x8x8 digits."""

    def __init__(self) -> None:
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        )
        self.head = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(32 * 4 * 4, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class TinyMLP(torch.nn.Module):
    def __init__(self, n_in: int = 6, n_out: int = 3) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(n_in, 32), torch.nn.ReLU(), torch.nn.Linear(32, n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def digits_net() -> DigitsNet:
    return DigitsNet()


def tiny_mlp() -> TinyMLP:
    return TinyMLP()
