"""Tiny versions of real architectures, built in plain torch (nothing downloaded), as `task_models:NAME` factories.

- `bert_encoder`: a two-layer BERT-like encoder (token + position embeddings, multi-head self-attention,
  GELU feed-forward, post-LayerNorm) mean-pooled and L2-normalized: a sentence embedding [batch, 32];
- `small_vit`: a ViT (4x4 patches, class token, two pre-norm blocks) with a 10-class head;
- `small_resnet`: a ResNet (stem, two basic blocks with BatchNorm and a strided shortcut) with a 10-class head;
- `yolo_head`: a YOLO-style detector whose one output holds boxes (cx, cy, w, h in pixels) and 3 class
  scores for 16 anchors, channels first: [batch, 4+3, 16] (Ultralytics' export layout).

Weights are seeded, so every factory call builds the same model.
"""

from __future__ import annotations

import torch
from torch import nn

VOCAB, SEQ, HIDDEN = 64, 12, 32


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        att = torch.softmax(q @ k.transpose(-2, -1) / (d // self.heads) ** 0.5, dim=-1)
        return self.out((att @ v).transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int = 4, pre_norm: bool = False) -> None:
        super().__init__()
        self.pre_norm = pre_norm
        self.att, self.norm1, self.norm2 = Attention(dim, heads), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pre_norm:  # ViT
            x = x + self.att(self.norm1(x))
            return x + self.ff(self.norm2(x))
        x = self.norm1(x + self.att(x))  # BERT
        return self.norm2(x + self.ff(x))


class BertEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.tokens, self.positions = nn.Embedding(VOCAB, HIDDEN), nn.Embedding(SEQ, HIDDEN)
        self.norm = nn.LayerNorm(HIDDEN)
        self.blocks = nn.Sequential(Block(HIDDEN), Block(HIDDEN))

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.blocks(self.norm(self.tokens(input_ids) + self.positions(positions)))
        return nn.functional.normalize(x.mean(dim=1), dim=-1)


class SmallViT(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, HIDDEN, 4, stride=4)
        self.cls = nn.Parameter(torch.randn(1, 1, HIDDEN) * 0.02)
        self.pos = nn.Parameter(torch.randn(1, 17, HIDDEN) * 0.02)
        self.blocks = nn.Sequential(Block(HIDDEN, pre_norm=True), Block(HIDDEN, pre_norm=True))
        self.norm, self.head = nn.LayerNorm(HIDDEN), nn.Linear(HIDDEN, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(p.shape[0], -1, -1), p], dim=1) + self.pos
        return self.head(self.norm(self.blocks(x))[:, 0])


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                                  nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.short = (nn.Identity() if stride == 1 and cin == cout else
                      nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.short(x))


class SmallResNet(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.layers = nn.Sequential(BasicBlock(16, 16, 1), BasicBlock(16, 32, 2))
        self.head = nn.Linear(32, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layers(self.stem(x)).mean(dim=(2, 3)))


class YoloHead(nn.Module):
    """A strided conv backbone and a 1x1 head: per anchor (cell of a 4x4 grid) a box and 3 class scores."""

    def __init__(self, classes: int = 3, size: int = 32) -> None:
        super().__init__()
        self.size = size
        self.backbone = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.SiLU(), nn.Conv2d(16, 32, 3, 2, 1), nn.SiLU(),
                                      nn.Conv2d(32, 32, 3, 2, 1), nn.SiLU())
        self.head = nn.Conv2d(32, 4 + classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.head(self.backbone(x)).flatten(2)  # [batch, 4+C, 16]
        grid = torch.arange(16, device=x.device, dtype=x.dtype)
        cx = ((grid % 4) + torch.sigmoid(y[:, 0])) * (self.size / 4)
        cy = ((grid // 4) + torch.sigmoid(y[:, 1])) * (self.size / 4)
        wh = torch.sigmoid(y[:, 2:4]) * self.size / 2
        return torch.cat([cx[:, None], cy[:, None], wh, torch.sigmoid(y[:, 4:])], dim=1)


def _seeded(cls, *args):
    torch.manual_seed(0)
    return cls(*args).eval()


def bert_encoder() -> BertEncoder:
    return _seeded(BertEncoder)


def small_vit() -> SmallViT:
    return _seeded(SmallViT)


def small_resnet() -> SmallResNet:
    return _seeded(SmallResNet)


def yolo_head() -> YoloHead:
    return _seeded(YoloHead)
