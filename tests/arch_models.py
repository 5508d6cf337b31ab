"""Tiny versions of real architectures in plain torch (no torchvision, no downloads), for the int8 and
TFLite tests: a two-layer BERT-like encoder, a small ViT and a small ResNet, the last two trained briefly
on scikit-learn's bundled digits (8x8 images) so that their predictions mean something."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

SEQ, VOCAB, WIDTH = 16, 64, 32


class Block(nn.Module):
    """A post-LN BERT layer: self-attention, residual, LayerNorm, GELU feed-forward, residual, LayerNorm."""

    def __init__(self, width: int = WIDTH, heads: int = 4) -> None:
        super().__init__()
        self.heads, self.width = heads, width
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.ff = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = self.qkv(x).reshape(b, t, 3, self.heads, self.width // self.heads).permute(2, 0, 3, 1, 4)
        att = torch.softmax(q @ k.transpose(-1, -2) / (self.width // self.heads) ** 0.5, dim=-1)
        x = self.ln1(x + self.proj((att @ v).transpose(1, 2).reshape(b, t, self.width)))
        return self.ln2(x + self.ff(x))


class TinyBert(nn.Module):
    """input_ids [batch, SEQ] int64 -> sentence embedding [batch, WIDTH] (mean pooled, L2-normalised)."""

    def __init__(self, layers: int = 2) -> None:
        super().__init__()
        self.tok = nn.Embedding(VOCAB, WIDTH)
        self.pos = nn.Parameter(torch.randn(1, SEQ, WIDTH) * 0.02)
        self.ln = nn.LayerNorm(WIDTH)
        self.blocks = nn.ModuleList(Block() for _ in range(layers))

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        x = self.ln(self.tok(input_ids) + self.pos)
        for block in self.blocks:
            x = block(x)
        return torch.nn.functional.normalize(x.mean(dim=1), dim=-1)


class TinyViT(nn.Module):
    """[batch, 1, 8, 8] -> 10 logits: 4x4 patches, class token, two encoder layers."""

    def __init__(self) -> None:
        super().__init__()
        self.patch = nn.Conv2d(1, WIDTH, 4, stride=4)
        self.cls = nn.Parameter(torch.zeros(1, 1, WIDTH))
        self.pos = nn.Parameter(torch.randn(1, 5, WIDTH) * 0.02)
        self.blocks = nn.Sequential(Block(), Block())
        self.head = nn.Linear(WIDTH, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        return self.head(self.blocks(x)[:, 0])


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.c2, self.b2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.down = None if stride == 1 and cin == cout else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.b2(self.c2(torch.relu(self.b1(self.c1(x)))))
        return torch.relu(y + (x if self.down is None else self.down(x)))


class TinyResNet(nn.Module):
    """[batch, 1, 8, 8] -> 10 logits: stem, two residual stages, global pooling."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.layers = nn.Sequential(BasicBlock(16, 16, 1), BasicBlock(16, 32, 2))
        self.head = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layers(self.stem(x)).mean(dim=(2, 3)))


def digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images / 16.0).astype(np.float32)[:, None], d.target.astype(np.int64)


def trained(model: nn.Module, epochs: int = 15, seed: int = 0, samples: int = 1400) -> nn.Module:
    """`model` trained on the first `samples` digits (Adam, batch 64): 15 epochs on 1400 give 90-97%
    accuracy; digits from 1400 on are held out."""
    torch.manual_seed(seed)
    x, y = digits()
    x, y = torch.from_numpy(x[:samples]), torch.from_numpy(y[:samples])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(epochs):
        for i in torch.randperm(len(x)).split(64):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[i]), y[i]).backward()
            opt.step()
    return model.eval()


def token_ids(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, VOCAB, size=(n, SEQ)).astype(np.int64)


def tiny_bert() -> TinyBert:
    torch.manual_seed(0)
    return TinyBert().eval()
