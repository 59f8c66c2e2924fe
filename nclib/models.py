"""Models with an explicit split into ``features(x)`` (the penultimate representation h) and a
``classifier`` head (logits = W h + b), so every chapter measures collapse the same way.

* :class:`MLP` — fully connected, optional BatchNorm; the quick-profile workhorse on MNIST-1D.
* :class:`CNN1D` — a small 1-D convnet for MNIST-1D signals.
* :class:`ResNet18` — the CIFAR-style ResNet-18 (3×3 stem, no max-pool; He et al. 2016) of
  Papyan et al.'s full-profile recipe.
* heads: a learnable ``nn.Linear``, :class:`FixedETFClassifier` (a frozen simplex ETF,
  Zhu et al. 2021; Yang et al. 2022), :class:`NearestETFGuidedClassifier` (Markou et al. 2024) or
  :class:`MultiCenterClassifier` (several frozen centres per class; chapter 6).
"""

from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import _validate as _v
from .geometry import coordinate_etf, nearest_etf, simplex_etf
from .guidance import etf_from_frame, nearest_etf_frame


def _check_etf_dims(in_features, num_classes) -> None:
    """A simplex ETF of K rows needs D ≥ K − 1 features (ValueError naming in_features otherwise)."""
    in_features = _v.integer(in_features, "in_features", lo=1)
    num_classes = _v.integer(num_classes, "num_classes", lo=2)
    if num_classes > in_features + 1:
        raise ValueError(
            f"in_features (the feature dimension) must be ≥ num_classes − 1 = {num_classes - 1} for a simplex ETF of "
            f"{num_classes} classes, got {in_features}"
        )


__all__ = [
    "NCModel",
    "MLP",
    "CNN1D",
    "ResNet18",
    "FixedETFClassifier",
    "build",
    "make_head",
    "MODELS",
    "count_parameters",
    "training_memory",
    "Projected",
    "NearestETFGuidedClassifier",
    "UnitFeatures",
    "MultiCenterClassifier",
]


class FixedETFClassifier(nn.Module):
    r"""A frozen simplex-ETF classifier: logits = s·E h (+ optional frozen zero bias).

    E (K×D) is a simplex ETF with unit-norm rows (pairwise cosines −1/(K−1)); it is a buffer, so
    it has no trainable parameters. ``orientation="random"`` (default) rotates it randomly by
    ``seed``; ``"coordinate"`` is the coordinate-aligned ETF of Zhu et al. (2021)'s code
    (:func:`nclib.geometry.coordinate_etf`, needs D ≥ K), the one non-negative post-ReLU features
    can reach with every class when D = K. ``learn_bias=True`` adds a learnable bias (zeros at
    the start), as their fixed head keeps. ``scale`` s multiplies the logits (with normalised
    features the logit scale acts as an inverse temperature). ``normalize=True`` L2-normalises
    the features first (Yang et al. 2022's ETF head)."""

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        seed: int = 0,
        scale: float = 1.0,
        normalize: bool = False,
        orientation: str = "random",
        learn_bias: bool = False,
    ):
        super().__init__()
        _check_etf_dims(in_features, num_classes)
        if orientation == "random":
            E = simplex_etf(num_classes, in_features, seed=seed, dtype=torch.float32)
        elif orientation == "coordinate":
            E = coordinate_etf(num_classes, in_features, dtype=torch.float32)
        else:
            raise ValueError(f"orientation must be 'random' or 'coordinate', got {orientation!r}")
        if not isinstance(learn_bias, bool):
            raise TypeError(f"learn_bias must be a bool, got {type(learn_bias).__name__}")
        self.register_buffer("weight", E)
        self.bias = nn.Parameter(torch.zeros(num_classes)) if learn_bias else None
        self.scale = _v.real(scale, "scale")
        self.normalize = bool(normalize)
        self.orientation = orientation
        self.in_features, self.out_features = in_features, num_classes

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.normalize:
            h = F.normalize(h, dim=1)
        out = self.scale * h @ self.weight.T
        return out if self.bias is None else out + self.bias

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, scale={self.scale}, "
            f"normalize={self.normalize}, orientation={self.orientation!r}, bias={self.bias is not None}"
        )


class NearestETFGuidedClassifier(nn.Module):
    r"""A classifier implicitly set, at every training step, to the simplex ETF nearest to the
    current class means (the idea of Markou et al. 2024, "Guiding neural collapse").

    logits = s · ĥ Wᵀ, with ĥ = h/‖h‖ (``normalize=True``) and W (K×D, unit rows) a buffer that is
    recomputed in every training forward that receives the batch's labels:

    1. running class means :math:`m_k \leftarrow \beta m_k + (1-\beta)\,\bar{\hat h}_k` of the
       (detached, normalised) features of the classes present in the batch (β = ``momentum``;
       a class seen for the first time starts at its batch mean);
    2. centre them (:math:`m_k - \frac1K\sum_j m_j`) and normalise each row (every class counts
       the same), giving N;
    3. W = the unit-row simplex ETF nearest to N in Frobenius norm (:func:`nclib.geometry.nearest_etf`:
       orthogonal Procrustes, one thin SVD). Since ETF rows sum to zero, only the re-centred
       :math:`\tilde N = (I-\tfrac1K\mathbf 1\mathbf 1^\top)N` matters, and with its thin SVD
       :math:`\tilde N = USV^\top`, :math:`W = \sqrt{K/(K-1)}\,(I-\tfrac1K\mathbf 1\mathbf 1^\top)UV^\top`.

    Until every class has been seen, W is a random simplex ETF drawn from ``seed`` (as
    :class:`FixedETFClassifier`). Without labels (evaluation, measurement) W stays as last set.

    Gradients. With ``grad=False`` (default) W depends on detached running means, so no gradient
    flows through it: W is a moving target that the features chase, like a target network, and
    one SVD of a K×D matrix per step is the whole cost. Markou et al. instead back-propagate
    through the inner problem (a declarative node with implicit differentiation); ``grad=True``
    approximates that: W is the nearest ETF of the *current batch's* class means (running means
    stand in for classes absent from the batch), kept in the autograd graph through
    ``torch.linalg.svd``. That gradient exists only while the batch means' singular values are
    distinct (they are, for finite batches), and grows as they approach a perfect ETF.

    The head needs the labels of each training batch: it sets ``uses_labels = True`` and
    :func:`nclib.train.fit` passes them as ``forward(h, labels)``.

    Options that follow the authors' code (Markou et al.) rather than the simplest variant:

    * ``momentum="auto"`` — running means with the decaying rate of the authors' code,
      :math:`m_k \leftarrow (1-\alpha_t)m_k + \alpha_t\bar h_k` with
      :math:`\alpha_t=\max(2/(t+1), 10^{-4})`, t = 1, 2, … the head's training step (a linearly
      weighted average of all past batch means, floored); a number β is the fixed-rate EMA above;
    * ``mean_norm="frobenius"`` — the centred means are scaled by their Frobenius norm instead of
      row by row ("row", the default). The nearest ETF's rotation is invariant to a global scale,
      so this is "centre only": larger classes means weigh more in the Procrustes fit;
    * ``center=True`` — the centring bias :math:`b=-W\mu_G` with :math:`\mu_G` the mean of the
      running class means: logits = s·(z − μ_G)Wᵀ (use with ``normalize=False`` for the authors'
      raw features);
    * ``guide=False`` — W stays the seeded random ETF for ever (only the running means, for the
      centring bias, are tracked): the fixed-ETF baseline with the same bias;
    * ``center="batch"`` — the statistics of the authors' code: each step's class means are centred
      by the *batch* mean :math:`\mu_G` before entering the running means, and the bias is
      :math:`b=-W\mu_G` with that batch mean (kept in the graph; evaluation uses the last training
      batch's :math:`\mu_G`);
    * ``prox=δ`` (> 0; the authors use 10⁻³) — W is the solution of the authors' inner problem with
      its proximal term towards the previous solution, :func:`nclib.guidance.nearest_etf_frame`:
      the frame P (K×D, orthonormal rows) minimising
      :math:`\lVert Y-MP/\sqrt{K-1}\rVert_F^2+\frac\delta2\lVert P-P_{\text{prev}}\rVert_F^2`
      (closed form: the polar factor of :math:`\frac{2}{\sqrt{K-1}}MY+\delta P_{\text{prev}}`;
      the first solve is proximal to :math:`[I_K\ 0]`, the authors' starting point), then
      :math:`W=\sqrt{K/(K-1)}\,MP`. Y is the centred running means scaled as ``mean_norm`` says;
    * ``grad="implicit"`` (needs ``prox`` > 0) — the authors' gradient: W stays in the autograd
      graph, through the current batch's share :math:`\alpha_t(\bar h_k-\mu_G)` of the running
      means, their normalisation and the exact derivative of the solution
      (:func:`nclib.guidance.polar`; the implicit derivative of the argmin), as the authors'
      declarative node back-propagates.
    """

    uses_labels = True

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        seed: int = 0,
        scale: float = 10.0,
        normalize: bool = True,
        momentum: float | str = 0.9,
        grad: bool = False,
        mean_norm: str = "row",
        center: bool | str = False,
        guide: bool = True,
        prox: float = 0.0,
    ):
        super().__init__()
        _check_etf_dims(in_features, num_classes)
        if momentum != "auto" and not (
            isinstance(momentum, (int, float)) and not isinstance(momentum, bool) and 0 <= momentum < 1
        ):
            raise ValueError(f"momentum must be a number in [0, 1) or 'auto', got {momentum!r}")
        if mean_norm not in ("row", "frobenius"):
            raise ValueError(f"mean_norm must be 'row' or 'frobenius', got {mean_norm!r}")
        if center != "batch" and not isinstance(center, bool):
            raise TypeError(f"center must be a bool or 'batch', got {type(center).__name__}")
        if not isinstance(guide, bool):
            raise TypeError(f"guide must be a bool, got {type(guide).__name__}")
        prox = _v.nonnegative(prox, "prox")
        if grad == "implicit" and prox == 0:
            raise ValueError("grad='implicit' needs prox > 0 (without it the inner problem's solution is not unique)")
        if not (isinstance(scale, (int, float)) and not isinstance(scale, bool) and math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale must be a positive number, got {scale!r}")
        if not isinstance(normalize, bool):
            raise TypeError(f"normalize must be a bool, got {type(normalize).__name__}")
        if grad != "implicit" and not isinstance(grad, bool):
            raise TypeError(f"grad must be a bool or 'implicit', got {type(grad).__name__}")
        self.register_buffer("weight", simplex_etf(num_classes, in_features, seed=seed, dtype=torch.float32))
        self.register_buffer("means", torch.zeros(num_classes, in_features))
        self.register_buffer("seen", torch.zeros(num_classes, dtype=torch.bool))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("frame", torch.eye(num_classes, in_features))  # the authors' start [I_K 0]
        self.register_buffer("mu_g", torch.zeros(in_features))  # last training batch's mean (center="batch")
        self.bias = None
        self.scale, self.normalize, self.grad = float(scale), normalize, grad
        self.momentum = "auto" if momentum == "auto" else float(momentum)
        self.mean_norm, self.center, self.guide, self.prox = mean_norm, center, guide, prox
        self.in_features, self.out_features = in_features, num_classes

    @staticmethod
    def etf_of(means: torch.Tensor) -> torch.Tensor:
        r"""The nearest simplex ETF (unit rows, K×D) of the centred, row-normalised ``means``,
        differentiable (thin SVD in float64): :math:`\sqrt{K/(K-1)}\,BUV^\top` with B an orthonormal
        basis of :math:`\mathbf 1^\perp` and :math:`B^\top\tilde M = USV^\top` — the same matrix as
        :func:`nclib.geometry.nearest_etf` of the row-normalised centred means."""
        K = means.shape[0]
        M = means.to(torch.float64)
        M = F.normalize(M - M.mean(0), dim=1)
        P = torch.eye(K, dtype=torch.float64, device=M.device) - 1.0 / K
        B = torch.linalg.svd(P)[0][:, : K - 1]
        U, _, Vh = torch.linalg.svd(B.T @ M, full_matrices=False)
        return (math.sqrt(K / (K - 1)) * B @ (U @ Vh)).to(means.dtype)

    def _batch_means(self, z: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        K = self.out_features
        counts = torch.bincount(labels, minlength=K)
        sums = torch.zeros(K, z.shape[1], dtype=z.dtype, device=z.device).index_add(0, labels, z)
        return sums / counts.clamp_min(1)[:, None].to(z.dtype), counts > 0

    def forward(self, h: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        z = F.normalize(h, dim=1) if self.normalize else h
        W = self.weight
        if labels is not None and self.training:
            if labels.shape != (h.shape[0],) or labels.dtype.is_floating_point or labels.dtype == torch.bool:
                raise ValueError(
                    f"labels must be {h.shape[0]} integer class indices, got {labels.dtype} "
                    f"of shape {tuple(labels.shape)}"
                )
            if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.out_features):
                raise ValueError(
                    f"labels must lie in 0..{self.out_features - 1}, got [{int(labels.min())}, {int(labels.max())}]"
                )
            labels = labels.to(device=z.device, dtype=torch.long)
            bm, present = self._batch_means(z, labels)
            batch = self.center == "batch"
            mu = z.mean(0) if batch else None
            val = bm - mu if batch else bm  # the authors centre each step's means by the batch mean
            with torch.no_grad():
                self.steps += 1
                beta = 1.0 - max(2.0 / (int(self.steps) + 1), 1e-4) if self.momentum == "auto" else self.momentum
                old_means, old_seen = self.means.clone(), self.seen.clone()
                new = val.detach().to(self.means.dtype)
                upd = torch.where(self.seen[:, None], beta * self.means + (1 - beta) * new, new)
                self.means.copy_(torch.where(present[:, None], upd, self.means))
                self.seen |= present
                if batch:
                    self.mu_g.copy_(mu.detach())
            if self.guide and bool(self.seen.all()):
                if self.grad is True:
                    M = torch.where(present[:, None], bm, self.means.to(bm.dtype))
                    W = self.etf_of(M).to(z.dtype)
                    if torch.isfinite(W).all():
                        self.weight.copy_(W.detach())
                    else:  # degenerate means (e.g. identical rows): keep the last ETF
                        W = self.weight
                elif self.prox > 0:
                    if self.grad == "implicit":  # the running means with the batch's share in the graph
                        old = old_means.to(val.dtype)
                        cur = torch.where(old_seen[:, None], beta * old + (1 - beta) * val, val)
                        cur = torch.where(present[:, None], cur, old)
                    else:
                        cur = self.means
                    Y = cur.to(torch.float64)
                    Y = Y - Y.mean(0)
                    Y = F.normalize(Y, dim=1) if self.mean_norm == "row" else Y / Y.norm()
                    if bool(torch.isfinite(Y).all()):  # all means equal: no nearest ETF, keep the last one
                        P = nearest_etf_frame(Y, self.frame, self.prox)
                        W = etf_from_frame(P).to(z.dtype)
                        self.frame.copy_(P.detach())
                        self.weight.copy_(W.detach())
                    if self.grad is False:
                        W = self.weight
                else:
                    with torch.no_grad():
                        M = self.means - self.means.mean(0)
                        if self.mean_norm == "row":
                            M = F.normalize(M, dim=1)
                        if bool(M.norm() > 0):  # all means equal: no nearest ETF, keep the last one
                            self.weight.copy_(nearest_etf(M)[0])
                    W = self.weight
            if batch:
                return self.scale * (z - mu) @ W.T  # the centring bias b = −W μ_G of this batch
        if self.center == "batch":
            z = z - self.mu_g.to(z.dtype)
        elif self.center and bool(self.seen.any()):
            z = z - self.means[self.seen].mean(0).to(z.dtype)  # the centring bias b = −W μ_G
        return self.scale * z @ W.T

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, scale={self.scale}, "
            f"normalize={self.normalize}, momentum={self.momentum}, grad={self.grad}, mean_norm={self.mean_norm}, "
            f"center={self.center}, guide={self.guide}, prox={self.prox}"
        )


def _real(v, name: str) -> float:
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(v).__name__}")
    v = float(v)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    return v


class MultiCenterClassifier(nn.Module):
    r"""A frozen classifier with :math:`f_k` centres for class k (neural collapse to multiple
    centres, Yan et al. 2024, NeurIPS; bib key ``dang2024multicenter``).

    Class directions :math:`w_k` form a unit simplex ETF (seeded rotation); each class gets
    :math:`f_k` unit centres built as in the paper (its figure of the construction,
    :math:`W_{ij} = \cos\theta\,v_{ij} + \sin\theta\,w_i`, θ = 0.2 in its experiments):

    .. math:: c_{kj} = \sin\theta\,w_k + \cos\theta\,v_{kj},

    with the :math:`v_{kj}` orthonormal and orthogonal to every :math:`w_k` (needs
    :math:`D \ge K-1+\sum_k f_k`). So θ is the angle between a centre and its own direction
    :math:`v_{kj}`, and :math:`\pi/2-\theta` the angle to the class direction (78° at θ = 0.2): the
    centres of a class spread over :math:`f_k` nearly orthogonal directions, which is what lets a
    class with more centres own more directions. The class *target* is the mean of its centres,
    :math:`m_k = \frac1{f_k}\sum_j c_{kj}` (norm :math:`\sqrt{\sin^2\theta + \cos^2\theta/f_k}`), the
    point the paper's UFM analysis shows the features of class k collapse to (NCMC) and the one
    the ``"multicenter_cosine"`` loss trains them towards.

    ``forward(h)`` returns ``scale`` × the scores of ``rule``:

    * ``"max"`` — the generalised classification rule: :math:`s_k(h) = \max_j\cos(h, c_{kj})`;
      a class with more centres owns a wider region of directions;
    * ``"mean"`` — :math:`s_k(h) = \cos(h, m_k)`, the nearest target by angle.

    ``weight`` (K×D buffer) holds the unit targets :math:`m_k/\lVert m_k\rVert`, so a linear read-out
    :math:`\arg\max_k\langle w_k, h\rangle` is exactly the ``"mean"`` rule (what
    :func:`nclib.metrics.measure` evaluates). No trainable parameters.
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        centers=None,
        theta: float = 0.2,
        rule: str = "max",
        scale: float = 1.0,
        seed: int = 0,
    ):
        super().__init__()
        K, D = int(num_classes), int(in_features)
        f = [1] * K if centers is None else [int(c) for c in centers]
        if len(f) != K or min(f) < 1:
            raise ValueError(f"centers must give a positive count for each of the {K} classes, got {centers}")
        M = sum(f)
        if D < K - 1 + M:
            raise ValueError(f"{M} centres around a {K}-class ETF need feature dimension ≥ {K - 1 + M}, got {D}")
        if rule not in ("max", "mean"):
            raise ValueError(f"rule must be 'max' or 'mean', got {rule!r}")
        theta = _real(theta, "theta")
        E = simplex_etf(K, D, seed=seed)  # K×D unit rows
        U = torch.linalg.svd(E, full_matrices=False)[2][: K - 1]  # basis of span(E)
        g = torch.Generator().manual_seed(int(seed) + 1)
        G = torch.randn(D, M, generator=g, dtype=torch.float64)
        G = G - U.T @ (U @ G)
        V = torch.linalg.qr(G)[0].T  # M×D orthonormal, ⊥ span(E)
        owner = torch.arange(K).repeat_interleave(torch.tensor(f))
        C = math.sin(theta) * E[owner] + math.cos(theta) * V  # the paper's W_ij = cos θ v_ij + sin θ w_i
        T = (
            torch.zeros(K, D, dtype=torch.float64).index_add_(0, owner, C)
            / torch.tensor(f, dtype=torch.float64)[:, None]
        )
        self.register_buffer("centers", C.float())
        self.register_buffer("owner", owner)
        self.register_buffer("targets", T.float())
        self.register_buffer("weight", F.normalize(T, dim=1).float())
        self.bias = None
        self.rule, self.scale, self.theta = rule, float(scale), theta
        self.in_features, self.out_features, self.num_centers = D, K, f

    def scores(self, h: Tensor, rule: str | None = None) -> Tensor:
        """Unscaled class scores (N×K) under ``rule`` (default: the head's)."""
        rule = self.rule if rule is None else rule
        hn = F.normalize(h, dim=1)
        if rule == "mean":
            return hn @ self.weight.T
        if rule != "max":
            raise ValueError(f"rule must be 'max' or 'mean', got {rule!r}")
        s = hn @ self.centers.T  # N×M cosines
        out = torch.full((h.shape[0], self.out_features), -2.0, dtype=s.dtype, device=s.device)
        return out.scatter_reduce(1, self.owner.expand(h.shape[0], -1), s, reduce="amax")

    def forward(self, h: Tensor) -> Tensor:
        return self.scale * self.scores(h)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, centers={self.num_centers}, "
            f"theta={self.theta:g}, rule={self.rule!r}, scale={self.scale:g}"
        )


def make_head(kind: str, in_features: int, num_classes: int, *, bias: bool = True, seed: int = 0, **kw) -> nn.Module:
    """A classifier head by name: ``"linear"`` (learnable), ``"etf"`` (frozen simplex ETF),
    ``"guided"`` (the nearest simplex ETF of running class means, :class:`NearestETFGuidedClassifier`) or
    ``"multicenter"`` (frozen, several centres per class: :class:`MultiCenterClassifier`)."""
    if kind == "linear":
        return nn.Linear(in_features, num_classes, bias=bias)
    if kind == "etf":
        return FixedETFClassifier(in_features, num_classes, seed=seed, **kw)
    if kind == "guided":  # the nearest ETF of running class means, reset every step (chapter 8)
        return NearestETFGuidedClassifier(in_features, num_classes, seed=seed, **kw)
    if kind == "multicenter":  # frozen, several centres per class (chapter 6)
        return MultiCenterClassifier(in_features, num_classes, seed=seed, **kw)
    raise ValueError(f"unknown head {kind!r}; choose 'linear', 'etf', 'guided' or 'multicenter'")


class NCModel(nn.Module):
    """Base: ``forward(x) = classifier(features(x))``."""

    classifier: nn.Module

    def features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class MLP(NCModel):
    """``depth`` hidden layers of ``width`` units (Linear → [BatchNorm] → ReLU); h is the last.

    ``feature_dim`` (default: ``width``) sets the width of the last hidden layer alone, the feature
    dimension d the classifier sees: Zhu et al. (2021) set d = K under a fixed simplex-ETF head."""

    def __init__(
        self,
        in_dim: int,
        num_classes: int,
        *,
        width: int = 512,
        depth: int = 3,
        batchnorm: bool = True,
        head: str = "linear",
        head_bias: bool = True,
        seed: int = 0,
        feature_dim: int | None = None,
        **head_kw,
    ):
        super().__init__()
        depth = _v.integer(depth, "depth", lo=1)
        width = _v.integer(width, "width", lo=1)
        feature_dim = width if feature_dim is None else _v.integer(feature_dim, "feature_dim", lo=1)
        layers, d = [], in_dim
        for i in range(depth):
            out = feature_dim if i == depth - 1 else width
            layers += [nn.Linear(d, out, bias=not batchnorm)]
            if batchnorm:
                layers += [nn.BatchNorm1d(out)]
            layers += [nn.ReLU()]
            d = out
        self.body = nn.Sequential(*layers)
        self.classifier = make_head(head, feature_dim, num_classes, bias=head_bias, seed=seed, **head_kw)

    def features(self, x):
        return self.body(x.flatten(1))


class CNN1D(NCModel):
    """Three 1-D conv blocks (channels c, 2c, 2c; kernel 5; stride 2) → linear feature layer."""

    def __init__(
        self,
        in_len: int,
        num_classes: int,
        *,
        channels: int = 32,
        width: int = 256,
        batchnorm: bool = True,
        head: str = "linear",
        head_bias: bool = True,
        seed: int = 0,
        **head_kw,
    ):
        super().__init__()
        chans, blocks, c_in, L = [channels, 2 * channels, 2 * channels], [], 1, in_len
        for c in chans:
            blocks += [nn.Conv1d(c_in, c, 5, stride=2, padding=2, bias=not batchnorm)]
            blocks += [nn.BatchNorm1d(c)] if batchnorm else []
            blocks += [nn.ReLU()]
            c_in, L = c, (L + 1) // 2
        self.conv = nn.Sequential(*blocks)
        fc = (
            [nn.Linear(c_in * L, width, bias=not batchnorm)]
            + ([nn.BatchNorm1d(width)] if batchnorm else [])
            + [nn.ReLU()]
        )
        self.fc_features = nn.Sequential(*fc)
        self.classifier = make_head(head, width, num_classes, bias=head_bias, seed=seed, **head_kw)

    def features(self, x):
        x = x.reshape(x.shape[0], 1, -1)
        return self.fc_features(self.conv(x).flatten(1))


class _BasicBlock(nn.Module):
    """conv(c_in→c_out)–BN–ReLU–conv(c_out→out)–BN plus shortcut, ReLU; ``out`` defaults to c_out
    (a narrower ``out`` is Zhu et al.'s d = K last block, with a 1×1 projection shortcut)."""

    def __init__(self, c_in, c_out, stride, out=None):
        super().__init__()
        out = c_out if out is None else out
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out)
        self.short = nn.Sequential()
        if stride != 1 or c_in != out:
            self.short = nn.Sequential(nn.Conv2d(c_in, out, 1, stride, bias=False), nn.BatchNorm2d(out))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.short(x))


class ResNet18(NCModel):
    """CIFAR-style ResNet-18: 3×3 stem (no max-pool), stages 64/128/256/512, global average pool.
    h is the 512-d pooled feature (the penultimate layer Papyan et al. measure).

    ``feature_dim`` d (default 8·width = 512) narrows the last block's second convolution to d
    output channels, with a 1×1 convolution + BN shortcut, as Zhu et al. (2021)'s code does for
    d = K; the rest of the network is unchanged."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        width: int = 64,
        head: str = "linear",
        head_bias: bool = True,
        seed: int = 0,
        feature_dim: int | None = None,
        **head_kw,
    ):
        super().__init__()
        width = _v.integer(width, "width", lo=1)
        feature_dim = 8 * width if feature_dim is None else _v.integer(feature_dim, "feature_dim", lo=1)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        stages, c = [], width
        for i, mult in enumerate((1, 2, 4, 8)):
            c_out = width * mult
            stride = 1 if i == 0 else 2
            last = feature_dim if i == 3 else None
            stages += [_BasicBlock(c, c_out, stride), _BasicBlock(c_out, c_out, 1, out=last)]
            c = c_out
        self.stages = nn.Sequential(*stages)
        self.classifier = make_head(head, feature_dim, num_classes, bias=head_bias, seed=seed, **head_kw)

    def features(self, x):
        return F.adaptive_avg_pool2d(self.stages(self.stem(x)), 1).flatten(1)


class Projected(NCModel):
    """``base`` with a linear projection appended to its features: h = P·base.features(x) + c,
    of dimension ``dim``, and a fresh classifier head on h (``base``'s own head is removed).

    The MCR² architecture: Yu, Chan et al. (2020) end their ResNet-18 with
    Linear–BatchNorm–ReLU–Linear to a 128-d feature (then L2-normalise it, which
    :class:`nclib.losses.MCR2Loss` does); the backbone's last Linear–[BatchNorm]–ReLU layer plus
    this projection reproduce that head. Built by ``build(..., projection=dim)``."""

    def __init__(
        self,
        base: NCModel,
        dim: int,
        num_classes: int,
        *,
        head: str = "linear",
        head_bias: bool = True,
        seed: int = 0,
        **head_kw,
    ):
        super().__init__()
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
            raise ValueError(f"projection dimension must be a positive int, got {dim!r}")
        in_features = base.classifier.in_features
        base.classifier = nn.Identity()
        self.base = base
        self.projection = nn.Linear(in_features, dim)
        self.classifier = make_head(head, dim, num_classes, bias=head_bias, seed=seed, **head_kw)

    def features(self, x):
        return self.projection(self.base.features(x))


class UnitFeatures(NCModel):
    """``base`` with its features projected on a sphere, h = r·f(x)/‖f(x)‖ (r = ``radius``), and
    ``base``'s classifier head moved on top of them. NC metrics are then measured on the
    normalised features the head actually sees (as for cosine or normalised-ETF heads; Yang et
    al. 2022, Markou et al. 2024); a learnable linear head on them is a cosine classifier with
    logit scale r·‖w_k‖. Built by ``build(..., normalize_features=True or r)``."""

    def __init__(self, base: NCModel, radius: float = 1.0):
        super().__init__()
        if (
            isinstance(radius, bool)
            or not isinstance(radius, (int, float))
            or not (math.isfinite(radius) and radius > 0)
        ):
            raise ValueError(f"radius must be a positive number, got {radius!r}")
        self.classifier = base.classifier
        base.classifier = nn.Identity()
        self.base = base
        self.radius = float(radius)

    def features(self, x):
        return self.radius * F.normalize(self.base.features(x), dim=1)


MODELS = {"mlp": MLP, "cnn1d": CNN1D, "resnet18": ResNet18}


def build(name: str, input_shape, num_classes: int, **kwargs) -> NCModel:
    """Build a model by name for inputs of ``input_shape`` (without the batch dimension).

    ``mlp`` and ``cnn1d`` take the flattened length; ``resnet18`` takes (C, H, W).
    ``projection=dim`` appends a linear projection to the features (:class:`Projected`, the MCR²
    head); without it the model is unchanged. ``normalize_features=True`` L2-normalises the
    features (:class:`UnitFeatures`; a number r puts them on the sphere of radius r; default
    False: unchanged).
    The initialisation is drawn under a forked RNG seeded by ``seed`` (default 0; it also
    rotates a fixed ETF head), so the same arguments give the same weights and the caller's
    global torch RNG is left untouched."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {sorted(MODELS)}")
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int ≥ 2, got {num_classes!r}")
    seed = kwargs.setdefault("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    shape = tuple(input_shape)
    if name == "resnet18" and len(shape) != 3:
        raise ValueError(f"resnet18 needs image inputs (C, H, W), got input_shape={shape}")
    projection = kwargs.pop("projection", None)
    normalize_features = kwargs.pop("normalize_features", False)
    if not isinstance(normalize_features, (bool, int, float)):
        raise TypeError(f"normalize_features must be a bool or a radius, got {type(normalize_features).__name__}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if name == "resnet18":
            model = ResNet18(shape[0], num_classes, **kwargs)
        else:
            model = MODELS[name](int(math.prod(shape)), num_classes, **kwargs)
        if projection is not None:
            head_kw = {k: v for k, v in kwargs.items() if k not in ("width", "depth", "batchnorm", "channels")}
            model = Projected(model, projection, num_classes, **head_kw)
        if normalize_features is not False:
            model = UnitFeatures(model, 1.0 if normalize_features is True else normalize_features)
        return model


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters; buffers such as a fixed ETF head do not count."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def training_memory(model: nn.Module, x: Tensor, *, momentum: bool = True) -> dict[str, int]:
    """Bytes that one SGD training step on the batch ``x`` holds, measured on ``model`` itself.

    * ``parameters``: the trainable parameters; ``gradients``: one gradient of each;
      ``optimizer_state``: SGD's momentum buffers (as many bytes again; 0 with ``momentum=False``);
    * ``activations``: the tensors autograd saves for the backward pass during one forward pass in
      training mode, counted once per storage (``torch.autograd.graph.saved_tensors_hooks``),
      excluding the model's own parameters and buffers. The input batch counts when a layer saves it.
    * ``total``: their sum.

    Frozen buffers (a fixed ETF head) hold memory too but no gradient and no optimizer state; they
    are left out, as Zhu et al. (2021) count a fixed classifier as saved. BatchNorm running statistics
    are restored afterwards, so measuring leaves the model as it was."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor batch, got {type(x).__name__}")
    if x.ndim < 2 or x.shape[0] < 2:
        raise ValueError(f"x must be a batch of at least 2 inputs (BatchNorm needs 2), got shape {tuple(x.shape)}")
    if not isinstance(momentum, bool):
        raise TypeError(f"momentum must be a bool, got {type(momentum).__name__}")
    trainable = [p for p in model.parameters() if p.requires_grad]
    p_bytes = sum(p.numel() * p.element_size() for p in trainable)
    own = {t.untyped_storage().data_ptr() for t in (*model.parameters(), *model.buffers())}
    saved: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in own:
            saved.setdefault(ptr, t.untyped_storage().nbytes())
        return t

    state = {k: v.clone() for k, v in model.state_dict().items()}
    was_training = model.training
    model.train()
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.enable_grad():
            model(x)
    finally:
        model.load_state_dict(state)
        model.train(was_training)
    out = {
        "parameters": p_bytes,
        "gradients": p_bytes,
        "optimizer_state": p_bytes if momentum else 0,
        "activations": sum(saved.values()),
    }
    out["total"] = sum(out.values())
    return out
