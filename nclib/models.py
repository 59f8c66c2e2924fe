"""Models with an explicit split into ``features(x)`` (the penultimate representation h) and a
``classifier`` head (logits = W h + b), so every chapter measures collapse the same way.

* :class:`MLP` — fully connected, optional BatchNorm; the quick-profile workhorse on MNIST-1D.
* :class:`CNN1D` — a small 1-D convnet for MNIST-1D signals.
* :class:`ResNet18` — the CIFAR-style ResNet-18 (3×3 stem, no max-pool; He et al. 2016) of
  Papyan et al.'s full-profile recipe.
* heads: a learnable ``nn.Linear`` or :class:`FixedETFClassifier` (a frozen simplex ETF,
  Zhu et al. 2021; Yang et al. 2022).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .geometry import simplex_etf

__all__ = ["NCModel", "MLP", "CNN1D", "ResNet18", "FixedETFClassifier", "build", "make_head", "MODELS",
           "count_parameters"]


class FixedETFClassifier(nn.Module):
    r"""A frozen simplex-ETF classifier: logits = s·E h (+ optional frozen zero bias).

    E (K×D) is a simplex ETF with unit-norm rows (pairwise cosines −1/(K−1)), randomly rotated
    by ``seed``; it is a buffer, so it has no trainable parameters. ``scale`` s multiplies the
    logits (with normalised features the logit scale acts as an inverse temperature).
    ``normalize=True`` L2-normalises the features first (Yang et al. 2022's ETF head)."""

    def __init__(self, in_features: int, num_classes: int, *, seed: int = 0, scale: float = 1.0,
                 normalize: bool = False):
        super().__init__()
        if num_classes > in_features + 1:
            raise ValueError(f"a simplex ETF of {num_classes} classes needs feature dimension ≥ {num_classes - 1}, "
                             f"got {in_features}")
        self.register_buffer("weight", simplex_etf(num_classes, in_features, seed=seed, dtype=torch.float32))
        self.bias = None
        self.scale = float(scale)
        self.normalize = bool(normalize)
        self.in_features, self.out_features = in_features, num_classes

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.normalize:
            h = F.normalize(h, dim=1)
        return self.scale * h @ self.weight.T

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, scale={self.scale}, normalize={self.normalize}"


def make_head(kind: str, in_features: int, num_classes: int, *, bias: bool = True, seed: int = 0, **kw) -> nn.Module:
    """A classifier head by name: ``"linear"`` (learnable) or ``"etf"`` (frozen simplex ETF)."""
    if kind == "linear":
        return nn.Linear(in_features, num_classes, bias=bias)
    if kind == "etf":
        return FixedETFClassifier(in_features, num_classes, seed=seed, **kw)
    raise ValueError(f"unknown head {kind!r}; choose 'linear' or 'etf'")


class NCModel(nn.Module):
    """Base: ``forward(x) = classifier(features(x))``."""

    classifier: nn.Module

    def features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class MLP(NCModel):
    """``depth`` hidden layers of ``width`` units (Linear → [BatchNorm] → ReLU); h is the last."""

    def __init__(self, in_dim: int, num_classes: int, *, width: int = 512, depth: int = 3, batchnorm: bool = True,
                 head: str = "linear", head_bias: bool = True, seed: int = 0, **head_kw):
        super().__init__()
        if depth < 1 or width < 1:
            raise ValueError(f"need depth ≥ 1 and width ≥ 1, got depth={depth}, width={width}")
        layers, d = [], in_dim
        for _ in range(depth):
            layers += [nn.Linear(d, width, bias=not batchnorm)]
            if batchnorm:
                layers += [nn.BatchNorm1d(width)]
            layers += [nn.ReLU()]
            d = width
        self.body = nn.Sequential(*layers)
        self.classifier = make_head(head, width, num_classes, bias=head_bias, seed=seed, **head_kw)

    def features(self, x):
        return self.body(x.flatten(1))


class CNN1D(NCModel):
    """Three 1-D conv blocks (channels c, 2c, 2c; kernel 5; stride 2) → linear feature layer."""

    def __init__(self, in_len: int, num_classes: int, *, channels: int = 32, width: int = 256, batchnorm: bool = True,
                 head: str = "linear", head_bias: bool = True, seed: int = 0, **head_kw):
        super().__init__()
        chans, blocks, c_in, L = [channels, 2 * channels, 2 * channels], [], 1, in_len
        for c in chans:
            blocks += [nn.Conv1d(c_in, c, 5, stride=2, padding=2, bias=not batchnorm)]
            blocks += [nn.BatchNorm1d(c)] if batchnorm else []
            blocks += [nn.ReLU()]
            c_in, L = c, (L + 1) // 2
        self.conv = nn.Sequential(*blocks)
        fc = [nn.Linear(c_in * L, width, bias=not batchnorm)] + ([nn.BatchNorm1d(width)] if batchnorm else []) + [nn.ReLU()]
        self.fc_features = nn.Sequential(*fc)
        self.classifier = make_head(head, width, num_classes, bias=head_bias, seed=seed, **head_kw)

    def features(self, x):
        x = x.reshape(x.shape[0], 1, -1)
        return self.fc_features(self.conv(x).flatten(1))


class _BasicBlock(nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.short = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.short = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.short(x))


class ResNet18(NCModel):
    """CIFAR-style ResNet-18: 3×3 stem (no max-pool), stages 64/128/256/512, global average pool.
    h is the 512-d pooled feature (the penultimate layer Papyan et al. measure)."""

    def __init__(self, in_channels: int, num_classes: int, *, width: int = 64, head: str = "linear",
                 head_bias: bool = True, seed: int = 0, **head_kw):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        stages, c = [], width
        for i, mult in enumerate((1, 2, 4, 8)):
            c_out = width * mult
            stride = 1 if i == 0 else 2
            stages += [_BasicBlock(c, c_out, stride), _BasicBlock(c_out, c_out, 1)]
            c = c_out
        self.stages = nn.Sequential(*stages)
        self.classifier = make_head(head, c, num_classes, bias=head_bias, seed=seed, **head_kw)

    def features(self, x):
        return F.adaptive_avg_pool2d(self.stages(self.stem(x)), 1).flatten(1)


MODELS = {"mlp": MLP, "cnn1d": CNN1D, "resnet18": ResNet18}


def build(name: str, input_shape, num_classes: int, **kwargs) -> NCModel:
    """Build a model by name for inputs of ``input_shape`` (without the batch dimension).

    ``mlp`` and ``cnn1d`` take the flattened length; ``resnet18`` takes (C, H, W)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {sorted(MODELS)}")
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int ≥ 2, got {num_classes!r}")
    shape = tuple(input_shape)
    if name == "resnet18":
        if len(shape) != 3:
            raise ValueError(f"resnet18 needs image inputs (C, H, W), got input_shape={shape}")
        return ResNet18(shape[0], num_classes, **kwargs)
    return MODELS[name](int(math.prod(shape)), num_classes, **kwargs)


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters; buffers such as a fixed ETF head do not count."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
