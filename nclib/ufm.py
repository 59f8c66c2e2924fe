r"""The unconstrained features model (UFM) and the exact computations of the theory lab.

**The model.** In the UFM the last-layer features are free variables optimised together with
the classifier (Mixon et al. 2022; Zhu et al. 2021). With the book's conventions (features are
rows): free features ``H`` (N×D), classifier ``W`` (K×D), optional bias ``b`` (K), targets
``Y`` (N×K, one-hot rows for classification, arbitrary reals for regression). A *deep* UFM
(Súkeník et al. 2024) passes ``H`` through L−1 layers before the classifier,

.. math:: H_1 = H,\qquad H_{l+1} = \sigma(H_l A_l^\top)\ (l = 1..L-1),\qquad Z = H_L W^\top + \mathbf 1 b^\top,

with σ the identity or ReLU. The objective minimised by :func:`train_ufm` is

.. math:: F = \ell(Z, Y) + \tfrac{\lambda_H}{2}\lVert H\rVert_F^2
          + \sum_{l}\tfrac{\lambda_l}{2}\lVert A_l\rVert_F^2 + \tfrac{\lambda_W}{2}\lVert W\rVert_F^2
          + \tfrac{\lambda_b}{2}\lVert b\rVert^2,

with :math:`\ell = \frac1N\sum_i \mathrm{CE}(z_i, y_i)` (cross-entropy) or
:math:`\ell = \frac1{2N}\lVert Z - Y\rVert_F^2` (MSE) — the normalisation of Zhu et al. (2021):
the loss is averaged over samples, the feature penalty is not.

**Closed forms** (derived in the docstrings; each has a unit test):

* :func:`mse_ufm_optimum` — the MSE UFM optimum by the variational form of the nuclear norm
  (singular-value soft thresholding of the targets);
* :func:`ce_ufm_optimum` — the CE UFM optimum on the simplex-ETF family (Zhu et al. 2021);
* :func:`dnc_loss` — the regularised loss of the best deep-neural-collapse configuration of a deep
  UFM (the reference point of Súkeník et al. 2024);
* :func:`nrc_optimal_gram` — :math:`WW^\top` at the regression UFM optimum (Andriopoulos et al. 2024);
* :func:`hadamard_reduced_gd` — cross-entropy gradient descent under Hadamard initialisation
  reduced to 2K scalars (Garrod et al. 2025).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import Tensor

from .metrics import measure_features

__all__ = [
    "class_labels",
    "ufm_forward",
    "ufm_objective",
    "UFMResult",
    "train_ufm",
    "train_ufm_restarts",
    "mse_ufm_optimum",
    "ce_ufm_optimum",
    "least_squares_classifier",
    "central_path_decomposition",
    "dnc_loss",
    "dnc_configuration",
    "class_mean_spectra",
    "numerical_rank",
    "nrc_metrics",
    "nrc_optimal_gram",
    "hadamard",
    "hadamard_init",
    "hadamard_reduced_gd",
    "principal_angles",
    "singular_drift",
    "mnist1d_latents",
    "train_regression_mlp",
]

LOSSES = ("ce", "mse")
OPTIMIZERS = ("gd", "lbfgs")
ACTIVATIONS = ("linear", "relu")
RECORDS = ("nc", "central_path", "nrc", "snapshots")
NC_KEYS = ("nc1", "trace_ratio", "etf_error", "equinorm_means", "equinorm_classifier", "equiangularity",
           "max_angle", "self_duality", "self_duality_zhu", "ncc_mismatch", "accuracy")


# ----------------------------------------------------------------------------- validation
def _int(v, name: str, minimum: int = 1) -> int:
    if not isinstance(v, int) or isinstance(v, bool):
        raise TypeError(f"{name} must be an int, got {type(v).__name__}")
    if v < minimum:
        raise ValueError(f"{name} must be ≥ {minimum}, got {v}")
    return v


def _nonneg(v, name: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(f"{name} must be a real number, got {type(v).__name__}")
    v = float(v)
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be finite and ≥ 0, got {v}")
    return v


def _positive(v, name: str) -> float:
    v = _nonneg(v, name)
    if v == 0:
        raise ValueError(f"{name} must be > 0, got 0")
    return v


def _choice(v, name: str, choices) -> str:
    if v not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {v!r}")
    return v


def _tensor(x, name: str, ndim: int | None = None, floating: bool = True) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {tuple(x.shape)}")
    if floating:
        if not x.dtype.is_floating_point:
            raise TypeError(f"{name} must be floating point, got {x.dtype}")
        if not torch.isfinite(x).all():
            raise ValueError(f"{name} contains NaN or inf")
    return x


def _labels(labels, num_classes: int | None = None) -> tuple[Tensor, int]:
    labels = _tensor(labels, "labels", 1, floating=False)
    if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.is_complex():
        raise TypeError(f"labels must be an integer tensor, got {labels.dtype}")
    if labels.numel() == 0:
        raise ValueError("labels are empty")
    K = int(labels.max()) + 1 if num_classes is None else _int(num_classes, "num_classes", 2)
    if int(labels.min()) < 0 or int(labels.max()) >= K:
        raise ValueError(f"labels must lie in 0..{K - 1}, found [{int(labels.min())}, {int(labels.max())}]")
    if K < 2:
        raise ValueError(f"need at least 2 classes, got {K}")
    return labels.long(), K


def _generator(seed) -> torch.Generator:
    if isinstance(seed, torch.Generator):
        return seed
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int or a torch.Generator, got {type(seed).__name__}")
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def _one_hot(labels: Tensor, K: int, dtype=torch.float64) -> Tensor:
    return torch.nn.functional.one_hot(labels, K).to(dtype)


def class_labels(counts) -> Tensor:
    r"""Integer labels ``0..K−1`` in class-major order: class k repeated ``counts[k]`` times.

    ``counts`` is a sequence (or 1-D integer tensor) of K ≥ 2 positive class sizes; a balanced
    UFM with n samples per class is ``class_labels([n] * K)``, N = Σ n_k.
    """
    if isinstance(counts, Tensor):
        if counts.dtype.is_floating_point or counts.ndim != 1:
            raise TypeError("counts must be a 1-D integer tensor or a sequence of ints")
        counts = [int(c) for c in counts.tolist()]
    if not isinstance(counts, (list, tuple)):
        raise TypeError(f"counts must be a sequence of ints, got {type(counts).__name__}")
    if len(counts) < 2:
        raise ValueError(f"need at least 2 classes, got {len(counts)} count(s)")
    for k, c in enumerate(counts):
        _int(c, f"counts[{k}]", 1)
    return torch.arange(len(counts)).repeat_interleave(torch.tensor(counts))


# ----------------------------------------------------------------------------- the objective
def ufm_forward(H: Tensor, layers: Sequence[Tensor] = (), activation: str = "linear") -> list[Tensor]:
    r"""The features at every layer of a (deep) UFM: :math:`[H_1, \dots, H_L]` with
    :math:`H_1 = H` and :math:`H_{l+1} = \sigma(H_l A_l^\top)` (rows are samples).

    ``layers`` are the matrices :math:`A_l` (d_{l+1}×d_l); ``activation`` is ``"linear"`` or
    ``"relu"`` (Súkeník et al. 2024 use ReLU between layers and none on the free features).
    """
    _choice(activation, "activation", ACTIVATIONS)
    _tensor(H, "H", 2)
    d = H.shape[1]
    for i, A in enumerate(layers):
        if not isinstance(A, Tensor) or A.ndim != 2 or A.shape[1] != d:
            raise ValueError(f"layer {i} must be a tensor of shape (d_out, {d}), got {tuple(getattr(A, 'shape', ()))}")
        d = A.shape[0]
    return _forward_raw(H, layers, activation)


def _forward_raw(H: Tensor, layers, activation: str) -> list[Tensor]:
    feats = [H]
    for A in layers:
        x = feats[-1] @ A.T
        feats.append(torch.relu(x) if activation == "relu" else x)
    return feats


def _lam_list(lam_layers, n: int) -> list[float]:
    if n == 0:
        return []
    if isinstance(lam_layers, (int, float)) and not isinstance(lam_layers, bool):
        return [_nonneg(lam_layers, "lam_layers")] * n
    if not isinstance(lam_layers, (list, tuple)) or len(lam_layers) != n:
        raise ValueError(f"lam_layers must be a number or a sequence of {n} numbers (one per hidden layer)")
    return [_nonneg(v, f"lam_layers[{i}]") for i, v in enumerate(lam_layers)]


def _data_loss(Z: Tensor, labels: Tensor | None, Y: Tensor, loss: str) -> Tensor:
    if loss == "ce":
        return torch.nn.functional.cross_entropy(Z, labels)
    return 0.5 * (Z - Y).pow(2).sum() / Z.shape[0]


def ufm_objective(H: Tensor, W: Tensor, *, labels: Tensor | None = None, targets: Tensor | None = None,
                  b: Tensor | None = None, layers: Sequence[Tensor] = (), activation: str = "linear",
                  loss: str = "ce", lam_H: float = 0.0, lam_W: float = 0.0, lam_b: float = 0.0,
                  lam_layers=0.0) -> Tensor:
    r"""The regularised UFM objective F (module docstring) as a differentiable 0-dim tensor.

    .. math:: F = \ell(H_L W^\top + \mathbf 1 b^\top, Y) + \tfrac{\lambda_H}{2}\lVert H\rVert_F^2
              + \sum_l \tfrac{\lambda_l}{2}\lVert A_l\rVert_F^2 + \tfrac{\lambda_W}{2}\lVert W\rVert_F^2
              + \tfrac{\lambda_b}{2}\lVert b\rVert^2

    ``loss="ce"`` needs ``labels``; ``loss="mse"`` uses ``targets`` (N×K) or, when absent, the
    one-hot encoding of ``labels``. Normalisation as in Zhu et al. (2021).
    """
    _choice(loss, "loss", LOSSES)
    _tensor(H, "H", 2)
    _tensor(W, "W", 2)
    feats = ufm_forward(H, layers, activation)
    HL = feats[-1]
    if W.shape[1] != HL.shape[1]:
        raise ValueError(f"W must have {HL.shape[1]} columns (the last features' dimension), got {tuple(W.shape)}")
    Z = HL @ W.T
    if b is not None:
        if b.shape != (W.shape[0],):
            raise ValueError(f"b must have shape ({W.shape[0]},), got {tuple(b.shape)}")
        Z = Z + b
    if labels is not None:
        labels, _ = _labels(labels, W.shape[0] if (loss == "ce" or targets is None) else None)
        if labels.shape[0] != H.shape[0]:
            raise ValueError(f"labels has {labels.shape[0]} entries for {H.shape[0]} feature rows")
    if loss == "ce" and labels is None:
        raise ValueError("loss='ce' needs labels")
    Y = None
    if loss == "mse":
        if targets is None:
            if labels is None:
                raise ValueError("loss='mse' needs targets or labels")
            Y = _one_hot(labels, W.shape[0], H.dtype)
        else:
            Y = _tensor(targets, "targets", 2)
            if Y.shape != Z.shape:
                raise ValueError(f"targets must have shape {tuple(Z.shape)}, got {tuple(Y.shape)}")
    lams = [_nonneg(lam_H, "lam_H")] + _lam_list(lam_layers, len(layers)) + [_nonneg(lam_W, "lam_W")]
    if b is not None:
        lams.append(_nonneg(lam_b, "lam_b"))
    return _objective_raw(H, layers, W, b, labels, Y, loss, activation, lams)


def _objective_raw(H, layers, W, b, labels, Y, loss, activation, lams) -> Tensor:
    """F without validation (the solver's inner loop); ``lams`` = [λ_H, λ_1.., λ_W, (λ_b)]."""
    X = H
    for A in layers:
        X = X @ A.T
        if activation == "relu":
            X = torch.relu(X)
    Z = X @ W.T
    if b is not None:
        Z = Z + b
    F = _data_loss(Z, labels, Y, loss) + 0.5 * lams[0] * H.pow(2).sum()
    for lam, A in zip(lams[1:], layers):
        F = F + 0.5 * lam * A.pow(2).sum()
    F = F + 0.5 * lams[1 + len(layers)] * W.pow(2).sum()
    if b is not None:
        F = F + 0.5 * lams[-1] * b.pow(2).sum()
    return F


# ----------------------------------------------------------------------------- the result
@dataclass
class UFMResult:
    """A trained (deep) UFM: parameters (rows convention), the problem, and the logged history.

    ``H`` N×D free features, ``layers`` the hidden matrices A_l, ``W`` K×d classifier, ``b`` bias
    or None; ``labels`` (classification) or None; ``targets`` N×K (one-hot for classification);
    ``config`` the solver settings; ``history`` a DataFrame with one row per logged step
    (``step``, ``objective``, ``loss`` and the recorded metrics); ``snapshots`` parameter copies
    at the logged steps when ``record`` contained ``"snapshots"``.
    """

    H: Tensor
    W: Tensor
    b: Tensor | None
    layers: list
    labels: Tensor | None
    targets: Tensor
    config: dict
    history: object = None
    snapshots: list = field(default_factory=list, repr=False)

    def features(self) -> list[Tensor]:
        """Features at every layer, ``[H_1, …, H_L]`` (the last feeds the classifier)."""
        with torch.no_grad():
            return [f.detach() for f in ufm_forward(self.H, self.layers, self.config["activation"])]

    def logits(self) -> Tensor:
        """Z = H_L Wᵀ + b (N×K)."""
        Z = self.features()[-1] @ self.W.T
        return Z + self.b if self.b is not None else Z

    def objective(self) -> float:
        """The regularised objective F at the final parameters."""
        c = self.config
        with torch.no_grad():
            return float(ufm_objective(self.H, self.W, labels=self.labels, targets=self.targets, b=self.b,
                                       layers=self.layers, activation=c["activation"], loss=c["loss"],
                                       lam_H=c["lam_H"], lam_W=c["lam_W"], lam_b=c["lam_b"],
                                       lam_layers=c["lam_layers"]))

    def class_means(self, layer: int = -1) -> Tensor:
        """The K×d (uncentred) class means of one layer's features (default: the last layer)."""
        if self.labels is None:
            raise ValueError("class means need class labels; this is a regression UFM")
        Hl = self.features()[layer].to(torch.float64)
        K = self.W.shape[0]
        counts = torch.bincount(self.labels, minlength=K).to(torch.float64)
        return torch.zeros(K, Hl.shape[1], dtype=torch.float64).index_add_(0, self.labels, Hl) / counts[:, None]

    def metrics(self) -> dict:
        """NC metrics of the last-layer features with the classifier (:func:`nclib.metrics.measure_features`)."""
        if self.labels is None:
            raise ValueError("NC metrics need class labels; this is a regression UFM (use nrc_metrics)")
        return measure_features(self.features()[-1], self.labels, self.W.detach(),
                                None if self.b is None else self.b.detach(),
                                num_classes=self.W.shape[0]).metrics


def _gd_gradients(H, layers, W, b, Y, loss, activation, lams) -> list[Tensor]:
    """∇F by hand (backpropagation written out; several times faster than autograd on these tiny
    problems, and batched: every tensor may carry a leading restart dimension).
    Order: H, A_1..A_{L-1}, W, b; ``lams`` in the same order. Tested against autograd."""
    xs, pre = [H], []
    for A in layers:
        P = xs[-1] @ A.transpose(-1, -2)
        pre.append(P)
        xs.append(torch.relu(P) if activation == "relu" else P)
    Z = xs[-1] @ W.transpose(-1, -2)
    if b is not None:
        Z = Z + b.unsqueeze(-2)
    N = Z.shape[-2]
    dZ = (torch.softmax(Z, -1) - Y) / N if loss == "ce" else (Z - Y) / N
    gW = dZ.transpose(-1, -2) @ xs[-1] + lams[1 + len(layers)] * W
    dX = dZ @ W
    gA = []
    for l in range(len(layers) - 1, -1, -1):
        dP = dX * (pre[l] > 0) if activation == "relu" else dX
        gA.append(dP.transpose(-1, -2) @ xs[l] + lams[1 + l] * layers[l])
        dX = dP @ layers[l]
    out = [dX + lams[0] * H] + gA[::-1] + [gW]
    if b is not None:
        out.append(dZ.sum(-2) + lams[-1] * b)
    return out


def _problem(num_classes, n_per_class, counts, targets, dim, loss, bias, lam_H, lam_W, lam_b, depth, width,
             activation, lam_layers, optimizer, lr, steps, init_scale, log_every, record, dtype) -> dict:
    """Validate the arguments of :func:`train_ufm` once; return the problem description."""
    _choice(loss, "loss", LOSSES)
    _choice(optimizer, "optimizer", OPTIMIZERS)
    _choice(activation, "activation", ACTIVATIONS)
    if not isinstance(record, (list, tuple)):
        raise TypeError(f"record must be a list or tuple of names from {RECORDS}")
    for r in record:
        _choice(r, "record entry", RECORDS)
    dim = _int(dim, "dim")
    depth = _int(depth, "depth")
    width = dim if width is None else _int(width, "width")
    steps = _int(steps, "steps")
    lr = _positive(lr, "lr")
    init_scale = _positive(init_scale, "init_scale")
    lam_H, lam_W, lam_b = _nonneg(lam_H, "lam_H"), _nonneg(lam_W, "lam_W"), _nonneg(lam_b, "lam_b")
    lam_list = _lam_list(lam_W if lam_layers is None else lam_layers, depth - 1)
    log_every = max(1, steps // 100) if log_every is None else _int(log_every, "log_every")
    if not isinstance(bias, bool):
        raise TypeError(f"bias must be a bool, got {type(bias).__name__}")
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    if targets is not None:
        if num_classes is not None or n_per_class is not None or counts is not None:
            raise ValueError("give either targets (regression) or num_classes/n_per_class/counts, not both")
        if loss != "mse":
            raise ValueError("regression targets need loss='mse'")
        Y = _tensor(targets, "targets", 2).detach().to(dtype)
        labels, K = None, Y.shape[1]
        if "nc" in record or "central_path" in record:
            raise ValueError("record 'nc'/'central_path' need class labels; use record=('nrc',) for regression")
    else:
        if counts is None:
            if num_classes is None or n_per_class is None:
                raise ValueError("give num_classes and n_per_class (balanced), counts, or targets")
            counts = [_int(n_per_class, "n_per_class")] * _int(num_classes, "num_classes", 2)
        elif num_classes is not None and len(counts) != num_classes:
            raise ValueError(f"counts has {len(counts)} entries but num_classes={num_classes}")
        labels = class_labels(counts)
        K = len(counts)
        Y = _one_hot(labels, K, dtype)
        if "nrc" in record:
            raise ValueError("record 'nrc' is for regression targets")
    if "central_path" in record and (loss != "mse" or depth != 1):
        raise ValueError("the central-path decomposition needs loss='mse' and depth=1")
    N = Y.shape[0]
    prob = dict(labels=labels, targets=Y, K=K, N=N, dim=dim, depth=depth, width=width,
                d_last=dim if depth == 1 else width, loss=loss, bias=bias, lam_H=lam_H, lam_W=lam_W,
                lam_b=lam_b, lam_layers=lam_list, activation=activation, optimizer=optimizer, lr=lr,
                steps=steps, init_scale=init_scale, log_every=log_every, record=tuple(record), dtype=dtype)
    prob["lams"] = [lam_H] + lam_list + [lam_W] + ([lam_b] if bias else [])
    if "nrc" in record and depth == 1 and lam_H > 0 and lam_W > 0:
        prob["nrc_gamma"] = math.sqrt(N * lam_H * lam_W)  # the UFM closed form's γ (nrc_optimal_gram)
    return prob


def _init_params(prob: dict, seed, init: dict | None, fixed_W) -> dict:
    """Initial parameters of one restart: N(0, init_scale²) entries from ``seed``, or ``init``."""
    g = _generator(seed)
    dtype, s = prob["dtype"], prob["init_scale"]
    init = {} if init is None else dict(init)
    unknown = set(init) - {"H", "W", "b", "layers"}
    if unknown:
        raise ValueError(f"unknown init keys {sorted(unknown)}; allowed: H, W, b, layers")

    def given(x, name, shape):
        t = _tensor(x, name).detach().to(dtype).clone()
        if tuple(t.shape) != tuple(shape):
            raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(t.shape)}")
        return t

    def draw(shape):
        return (s * torch.randn(*shape, generator=g, dtype=torch.float64)).to(dtype)

    if fixed_W is not None and init.get("W") is not None:
        raise ValueError("give fixed_W or init['W'], not both")
    N, K, depth = prob["N"], prob["K"], prob["depth"]
    dims = [prob["dim"]] + [prob["width"]] * (depth - 1)
    H = given(init["H"], "init['H']", (N, dims[0])) if init.get("H") is not None else draw((N, dims[0]))
    if init.get("layers") is not None and len(init["layers"]) != depth - 1:
        raise ValueError(f"init['layers'] must hold {depth - 1} matrices")
    layers = []
    for l in range(depth - 1):
        shape = (dims[l + 1], dims[l])
        layers.append(given(init["layers"][l], f"init['layers'][{l}]", shape) if init.get("layers") is not None
                      else draw(shape))
    if fixed_W is not None:
        W = given(fixed_W, "fixed_W", (K, prob["d_last"]))
    else:
        W = given(init["W"], "init['W']", (K, prob["d_last"])) if init.get("W") is not None else draw((K, prob["d_last"]))
    b = None
    if prob["bias"]:
        b = given(init["b"], "init['b']", (K,)) if init.get("b") is not None else torch.zeros(K, dtype=dtype)
    elif init.get("b") is not None:
        raise ValueError("init['b'] given but bias=False")
    return {"H": H, "layers": layers, "W": W, "b": b}


def _record_row(step: int, params: dict, prob: dict) -> dict:
    record = prob["record"]
    with torch.no_grad():
        feats = _forward_raw(params["H"], params["layers"], prob["activation"])
        F = _objective_raw(params["H"], params["layers"], params["W"], params["b"], prob["labels"],
                           prob["targets"], prob["loss"], prob["activation"], prob["lams"])
        Z = feats[-1] @ params["W"].T
        if params["b"] is not None:
            Z = Z + params["b"]
        row = {"step": step, "objective": float(F),
               "loss": float(_data_loss(Z, prob["labels"], prob["targets"], prob["loss"]))}
        if not math.isfinite(row["objective"]):
            return row
        W, b = params["W"], params["b"]
        if "nc" in record:
            m = measure_features(feats[-1], prob["labels"], W, b, num_classes=prob["K"]).metrics
            row.update({k: m[k] for k in NC_KEYS if k in m})
        if "central_path" in record:
            row.update(central_path_decomposition(params["H"], W, b, labels=prob["labels"], lam_W=prob["lam_W"],
                                                  lam_b=prob["lam_b"], lam_H=prob["lam_H"]))
        if "nrc" in record:
            row.update(nrc_metrics(feats[-1], prob["targets"], W, gamma=prob.get("nrc_gamma")))
    return row


def _run(prob: dict, seeds: list, init, fixed_W, callback, progress) -> list[UFMResult]:
    import pandas as pd
    from tqdm.auto import tqdm

    R = len(seeds)
    starts = [_init_params(prob, s, init, fixed_W) for s in seeds]
    depth, lr, steps, log_every = prob["depth"], prob["lr"], prob["steps"], prob["log_every"]
    rows = [[] for _ in range(R)]
    snaps = [[] for _ in range(R)]

    def unpack(state, r):
        return {"H": state["H"][r], "layers": [A[r] for A in state["layers"]], "W": state["W"][r],
                "b": None if state["b"] is None else state["b"][r]}

    def log(step, state):
        for r in range(R):
            p = {k: (v.detach() if isinstance(v, Tensor) else [a.detach() for a in v] if isinstance(v, list) else v)
                 for k, v in unpack(state, r).items()}
            row = _record_row(step, p, prob)
            if not math.isfinite(row["objective"]):
                raise FloatingPointError(f"the objective is not finite at step {step} (seed {seeds[r]}); "
                                         f"reduce lr (now {lr})")
            if callback is not None:
                extra = callback(step, p)
                if extra:
                    row.update(extra)
            rows[r].append(row)
            if "snapshots" in prob["record"]:
                snaps[r].append({"step": step, "H": p["H"].clone(), "W": p["W"].clone(),
                                 "b": None if p["b"] is None else p["b"].clone(),
                                 "layers": [A.clone() for A in p["layers"]]})

    desc = f"UFM {prob['loss'].upper()} L={depth} {prob['optimizer']}" + (f" ×{R}" if R > 1 else "")
    if prob["optimizer"] == "gd":
        state = {"H": torch.stack([s["H"] for s in starts]),
                 "layers": [torch.stack([s["layers"][l] for s in starts]) for l in range(depth - 1)],
                 "W": torch.stack([s["W"] for s in starts]),
                 "b": None if starts[0]["b"] is None else torch.stack([s["b"] for s in starts])}
        params = [state["H"], *state["layers"]] + ([] if fixed_W is not None else [state["W"]]) \
            + ([state["b"]] if state["b"] is not None else [])
        with torch.no_grad():
            for t in tqdm(range(steps), desc=desc, disable=not progress, leave=False):
                if t % log_every == 0:
                    log(t, state)
                grads = _gd_gradients(state["H"], state["layers"], state["W"], state["b"], prob["targets"],
                                      prob["loss"], prob["activation"], prob["lams"])
                if fixed_W is not None:
                    del grads[depth]
                for p, gr in zip(params, grads):
                    p.sub_(lr * gr)
        log(steps, state)
        finals = [unpack(state, r) for r in range(R)]
    else:
        finals = []
        for r, start in enumerate(starts):
            H, W, b, layers = start["H"], start["W"], start["b"], start["layers"]
            params = [H, *layers] + ([] if fixed_W is not None else [W]) + ([b] if b is not None else [])
            for p in params:
                p.requires_grad_(True)
            opt = torch.optim.LBFGS(params, lr=lr, max_iter=log_every, history_size=50,
                                    line_search_fn="strong_wolfe", tolerance_grad=1e-13, tolerance_change=1e-16)

            def closure():
                opt.zero_grad()
                F = _objective_raw(H, layers, W, b, prob["labels"], prob["targets"], prob["loss"],
                                   prob["activation"], prob["lams"])
                F.backward()
                return F

            done = 0
            with tqdm(total=steps, desc=desc, disable=not progress, leave=False) as bar:
                sub_rows, sub_snaps = rows[r], snaps[r]

                def log1(step):
                    p = {"H": H.detach(), "layers": [A.detach() for A in layers], "W": W.detach(),
                         "b": None if b is None else b.detach()}
                    row = _record_row(step, p, prob)
                    if not math.isfinite(row["objective"]):
                        raise FloatingPointError(f"the objective is not finite at step {step} (seed {seeds[r]})")
                    if callback is not None:
                        extra = callback(step, p)
                        if extra:
                            row.update(extra)
                    sub_rows.append(row)
                    if "snapshots" in prob["record"]:
                        sub_snaps.append({"step": step, "H": p["H"].clone(), "W": p["W"].clone(),
                                          "b": None if b is None else p["b"].clone(),
                                          "layers": [A.clone() for A in p["layers"]]})

                log1(0)
                while done < steps:
                    chunk = min(log_every, steps - done)
                    opt.param_groups[0]["max_iter"] = chunk
                    opt.param_groups[0]["max_eval"] = chunk * 5 // 4 + 1
                    opt.step(closure)
                    done += chunk
                    bar.update(chunk)
                    log1(done)
            for p in params:
                p.requires_grad_(False)
            finals.append({"H": H.detach(), "layers": [A.detach() for A in layers], "W": W.detach(),
                           "b": None if b is None else b.detach()})
    out = []
    for r in range(R):
        f = finals[r]
        config = {k: prob[k] for k in ("K", "N", "dim", "depth", "width", "loss", "bias", "lam_H", "lam_W", "lam_b",
                                       "lam_layers", "activation", "optimizer", "lr", "steps", "init_scale")}
        config.update(num_classes=prob["K"], seed=seeds[r] if isinstance(seeds[r], int) else None,
                      fixed_W=fixed_W is not None)
        out.append(UFMResult(H=f["H"].clone(), W=f["W"].clone(), b=None if f["b"] is None else f["b"].clone(),
                             layers=[A.clone() for A in f["layers"]], labels=prob["labels"], targets=prob["targets"],
                             config=config, history=pd.DataFrame(rows[r]), snapshots=snaps[r]))
    return out


def train_ufm(*, num_classes: int | None = None, n_per_class: int | None = None, counts=None,
              targets: Tensor | None = None, dim: int, loss: str = "ce", bias: bool = False,
              lam_H: float = 5e-4, lam_W: float = 5e-4, lam_b: float = 0.0, depth: int = 1,
              width: int | None = None, activation: str = "linear", lam_layers=None,
              optimizer: str = "gd", lr: float = 1.0, steps: int = 1000, init_scale: float = 0.1,
              init: dict | None = None, fixed_W: Tensor | None = None, log_every: int | None = None,
              record: Sequence[str] = ("nc",), callback: Callable | None = None, seed=0,
              progress: bool = True, dtype=torch.float64) -> UFMResult:
    r"""Minimise the (deep) UFM objective F of the module docstring and log NC metrics.

    **Problem.** Classification: ``num_classes`` K with ``n_per_class`` n (balanced, N = nK) or
    ``counts`` (one size per class); labels are class-major (:func:`class_labels`).
    Regression: ``targets`` (N×t real matrix), ``loss="mse"``; the "classes" are the t outputs.
    ``dim`` is D, the dimension of the free features; ``depth`` L counts the weight matrices
    including ``W`` (L = 1 is the plain UFM; L > 1 puts L−1 hidden layers of ``width``
    (default ``dim``) with ``activation`` between H and W, each with weight decay
    ``lam_layers`` (default ``lam_W``)). ``bias`` adds ``b`` with weight decay ``lam_b``.
    ``fixed_W`` (K×d) freezes the classifier at a given matrix (Zhu et al.'s fixed-ETF experiment).

    **Solver.** ``optimizer="gd"``: plain full-batch gradient descent
    :math:`\theta \leftarrow \theta - \eta\nabla F(\theta)` with step ``lr`` for ``steps``
    steps (gradients by explicit backpropagation); ``"lbfgs"``: ``torch.optim.LBFGS`` with a
    strong-Wolfe line search, ``steps`` iterations (autograd). Initialisation: i.i.d.
    :math:`\mathcal N(0, \text{init\_scale}^2)` entries drawn from ``seed`` (an int or a
    ``torch.Generator``; the global RNG is untouched), or explicit tensors in ``init`` (keys
    ``"H"``, ``"W"``, ``"b"``, ``"layers"``). Computation in ``dtype`` (float64 by default).

    **Logging** every ``log_every`` steps (default steps/100) and at the end, into
    ``result.history``: ``step``, ``objective``, ``loss`` and, per ``record``:
    ``"nc"`` — the foundation NC metrics of the last-layer features (:mod:`nclib.metrics`);
    ``"central_path"`` — :func:`central_path_decomposition` (MSE, depth 1);
    ``"nrc"`` — :func:`nrc_metrics` (regression); ``"snapshots"`` — parameter copies in
    ``result.snapshots``. ``callback(step, params)`` may return a dict of extra columns.
    A non-finite objective raises ``FloatingPointError`` (reduce ``lr``).
    """
    prob = _problem(num_classes, n_per_class, counts, targets, dim, loss, bias, lam_H, lam_W, lam_b, depth, width,
                    activation, lam_layers, optimizer, lr, steps, init_scale, log_every, record, dtype)
    return _run(prob, [seed], init, fixed_W, callback, progress)[0]


def train_ufm_restarts(seeds: Sequence[int], **kwargs) -> list[UFMResult]:
    r"""Several random restarts of :func:`train_ufm` (same keyword arguments, one ``seed`` each).

    With ``optimizer="gd"`` the restarts run together as one batched gradient descent (a leading
    restart dimension on every tensor — the same iterates as separate runs, several times
    cheaper on small problems); L-BFGS runs them one after the other. Restart r starts from
    exactly the initialisation ``train_ufm(seed=seeds[r], ...)`` draws. ``init`` is refused
    (every restart would start from the same point).
    """
    if not isinstance(seeds, (list, tuple, range)) or len(seeds) == 0:
        raise ValueError("seeds must be a non-empty list of ints")
    seeds = list(seeds)
    for s in seeds:
        if not isinstance(s, int) or isinstance(s, bool):
            raise TypeError(f"every seed must be an int, got {type(s).__name__}")
    if "seed" in kwargs:
        raise TypeError("pass seeds=[...], not seed=")
    if kwargs.get("init") is not None:
        raise ValueError("init would give every restart the same start; use train_ufm for a given init")
    init = kwargs.pop("init", None)
    fixed_W = kwargs.pop("fixed_W", None)
    callback = kwargs.pop("callback", None)
    progress = kwargs.pop("progress", True)
    defaults = dict(num_classes=None, n_per_class=None, counts=None, targets=None, loss="ce", bias=False,
                    lam_H=5e-4, lam_W=5e-4, lam_b=0.0, depth=1, width=None, activation="linear", lam_layers=None,
                    optimizer="gd", lr=1.0, steps=1000, init_scale=0.1, log_every=None, record=("nc",),
                    dtype=torch.float64)
    unknown = set(kwargs) - set(defaults) - {"dim"}
    if unknown:
        raise TypeError(f"unknown arguments {sorted(unknown)}")
    if "dim" not in kwargs:
        raise TypeError("dim is required")
    a = {**defaults, **kwargs}
    prob = _problem(a["num_classes"], a["n_per_class"], a["counts"], a["targets"], a["dim"], a["loss"], a["bias"],
                    a["lam_H"], a["lam_W"], a["lam_b"], a["depth"], a["width"], a["activation"], a["lam_layers"],
                    a["optimizer"], a["lr"], a["steps"], a["init_scale"], a["log_every"], a["record"], a["dtype"])
    return _run(prob, seeds, init, fixed_W, callback, progress)


# ----------------------------------------------------------------------------- closed forms: MSE and CE
def _target_matrix(labels, num_classes, targets, dtype=torch.float64) -> Tensor:
    if (labels is None) == (targets is None):
        raise ValueError("give exactly one of labels (classification) or targets (N×t regression targets)")
    if targets is not None:
        return _tensor(targets, "targets", 2).to(dtype)
    labels, K = _labels(labels, num_classes)
    return _one_hot(labels, K, dtype)


def mse_ufm_optimum(*, labels: Tensor | None = None, num_classes: int | None = None,
                    targets: Tensor | None = None, dim: int, lam_W: float, lam_H: float,
                    bias: bool = False) -> dict:
    r"""The global optimum of the MSE UFM, in closed form.

    Problem (no hidden layers, bias unregularised when present):
    :math:`\min_{H,W,b}\ \frac1{2N}\lVert HW^\top + \mathbf 1b^\top - Y\rVert_F^2
    + \frac{\lambda_W}{2}\lVert W\rVert_F^2 + \frac{\lambda_H}{2}\lVert H\rVert_F^2`.

    Derivation. (i) For a fixed product :math:`Z = HW^\top` of rank ≤ D,
    :math:`\min \frac{\lambda_W}2\lVert W\rVert^2 + \frac{\lambda_H}2\lVert H\rVert^2 = c\lVert Z\rVert_*`
    with :math:`c = \sqrt{\lambda_W\lambda_H}` (AM–GM on the variational form of the nuclear norm,
    :math:`\lVert Z\rVert_* = \min_{Z=AB^\top}\frac12(\lVert A\rVert^2+\lVert B\rVert^2)`; Srebro et al. 2005,
    Recht, Fazel & Parrilo 2010). (ii) A free bias fits the column means exactly, leaving the
    centred targets :math:`\tilde Y = (I - \frac1N\mathbf 1\mathbf 1^\top)Y` (centring Z never raises
    its nuclear norm). (iii) :math:`\min_Z \frac1{2N}\lVert Z-\tilde Y\rVert^2 + c\lVert Z\rVert_*`
    over rank ≤ D is solved by soft-thresholding the singular values σ_j of :math:`\tilde Y`
    at :math:`\tau = Nc` and keeping the D largest:

    .. math:: s_j = (\sigma_j - Nc)_+\ (j \le D),\qquad
              F^\star = \sum_{j\le D} \Big[\tfrac{(\sigma_j - s_j)^2}{2N} + c\,s_j\Big]
              + \sum_{j > D}\tfrac{\sigma_j^2}{2N}.

    Balanced one-hot targets (n per class, N = nK, D ≥ K): σ_j = √n, so without bias
    :math:`F^\star = K\,c\,(\sqrt n - Nc/2)` when √n > Nc (else ½); with a free bias the K−1
    centred singular values are √n and :math:`F^\star = (K-1)\,c\,(\sqrt n - Nc/2)`.

    Returns ``{"objective", "singular_values"`` (s, of the optimal :math:`HW^\top` (+bias part
    excluded)), ``"target_singular_values"`` (σ), ``"threshold"`` (Nc)``}``.
    """
    Y = _target_matrix(labels, num_classes, targets)
    dim = _int(dim, "dim")
    lam_W, lam_H = _nonneg(lam_W, "lam_W"), _nonneg(lam_H, "lam_H")
    if not isinstance(bias, bool):
        raise TypeError("bias must be a bool")
    N = Y.shape[0]
    if bias:
        Y = Y - Y.mean(0, keepdim=True)
    sigma = torch.linalg.svdvals(Y)
    c = math.sqrt(lam_W * lam_H)
    tau = N * c
    s = (sigma - tau).clamp_min(0.0)
    s[dim:] = 0.0
    F = float(((sigma - s) ** 2).sum() / (2 * N) + c * s.sum())
    return {"objective": F, "singular_values": s, "target_singular_values": sigma, "threshold": tau}


def ce_ufm_optimum(num_classes: int, n_per_class: int, *, lam_W: float, lam_H: float) -> dict:
    r"""The global optimum of the balanced cross-entropy UFM (Zhu et al. 2021).

    Zhu et al. prove that with K classes of n samples, D ≥ K−1 and weight decays
    :math:`\lambda_W, \lambda_H > 0` (and any :math:`\lambda_b > 0`, or no bias), every global
    minimiser has collapsed features, a simplex-ETF classifier with features aligned to it, and
    b = 0. Writing :math:`W = w\,E`, :math:`h_i = h\,e_{y_i}` with E a unit-row simplex ETF,
    the correct logit is :math:`wh` and the others :math:`-wh/(K-1)`; for a product
    :math:`p = wh` the penalty :math:`\frac{\lambda_W}2 Kw^2 + \frac{\lambda_H}2 Nh^2` is at least
    :math:`\kappa p` with :math:`\kappa = \sqrt{\lambda_W\lambda_H KN}` (AM–GM, equality when
    :math:`\lambda_W K w^2 = \lambda_H N h^2`). So the optimum solves the 1-D convex problem
    :math:`\min_p \log(1 + (K-1)e^{-ap}) + \kappa p`, :math:`a = K/(K-1)`, whose stationarity
    condition gives, for κ < 1,

    .. math:: p^\star = \tfrac{K-1}{K}\log\frac{(K-1)(1-r)}{r},\qquad r = \kappa\,\tfrac{K-1}{K},

    (p* = 0 and F* = log K when κ ≥ 1: the features collapse to the origin).
    Returns ``{"objective", "p", "w_norm"`` (row norm w of W), ``"h_norm"`` (feature norm h)``}``.
    """
    K = _int(num_classes, "num_classes", 2)
    n = _int(n_per_class, "n_per_class")
    lam_W, lam_H = _positive(lam_W, "lam_W"), _positive(lam_H, "lam_H")
    N = K * n
    a = K / (K - 1)
    kappa = math.sqrt(lam_W * lam_H * K * N)
    if kappa >= 1:
        return {"objective": math.log(K), "p": 0.0, "w_norm": 0.0, "h_norm": 0.0}
    r = kappa * (K - 1) / K
    p = math.log((K - 1) * (1 - r) / r) / a
    F = math.log1p((K - 1) * math.exp(-a * p)) + kappa * p
    w = math.sqrt(p * math.sqrt(lam_H * N / (lam_W * K)))
    h = p / w
    return {"objective": F, "p": p, "w_norm": w, "h_norm": h}


# ----------------------------------------------------------------------------- MSE: the central path
def least_squares_classifier(features: Tensor, *, labels: Tensor | None = None, num_classes: int | None = None,
                             targets: Tensor | None = None, lam_W: float = 0.0, bias: bool = True,
                             lam_b: float = 0.0) -> tuple[Tensor, Tensor | None]:
    r"""The classifier that is MSE-optimal for *fixed* features (the "central path" classifier of
    Han et al. 2022, here with the same ridge penalties as the training objective):

    .. math:: (W^\star, b^\star) = \arg\min_{W,b}\ \tfrac1{2N}\lVert HW^\top + \mathbf 1b^\top - Y\rVert_F^2
              + \tfrac{\lambda_W}2\lVert W\rVert_F^2 + \tfrac{\lambda_b}2\lVert b\rVert^2,

    solved through the normal equations with augmented features :math:`\bar h = (h, 1)`:
    :math:`[W\ b] = \frac1N Y^\top\bar H\,A^{+}`,
    :math:`A = \frac1N\bar H^\top\bar H + \mathrm{diag}(\lambda_W I, \lambda_b)` (pseudo-inverse: the
    minimum-norm solution when A is singular). Returns ``(W, b)`` (b None when ``bias=False``).
    """
    H = _tensor(features, "features", 2).to(torch.float64)
    Y = _target_matrix(labels, num_classes, targets)
    if Y.shape[0] != H.shape[0]:
        raise ValueError(f"features have {H.shape[0]} rows but there are {Y.shape[0]} targets")
    lam_W, lam_b = _nonneg(lam_W, "lam_W"), _nonneg(lam_b, "lam_b")
    if not isinstance(bias, bool):
        raise TypeError(f"bias must be a bool, got {type(bias).__name__}")
    N, D = H.shape
    Hb = torch.cat([H, torch.ones(N, 1, dtype=H.dtype)], 1) if bias else H
    reg = torch.full((Hb.shape[1],), lam_W, dtype=H.dtype)
    if bias:
        reg[-1] = lam_b
    A = Hb.T @ Hb / N + torch.diag(reg)
    Theta = (Y.T @ Hb / N) @ torch.linalg.pinv(A, hermitian=True)
    return (Theta[:, :D], Theta[:, D]) if bias else (Theta, None)


def central_path_decomposition(features: Tensor, W: Tensor, b: Tensor | None = None, *, labels: Tensor,
                               num_classes: int | None = None, lam_W: float = 0.0, lam_b: float = 0.0,
                               lam_H: float = 0.0) -> dict:
    r"""Split the regularised MSE UFM objective into an NC1 part, an NC2/3 part and an
    off-central-path part (after Han et al. 2022, with the ridge penalties included).

    For fixed features F is a quadratic in Θ = [W b] with Hessian
    :math:`A = \frac1N\bar H^\top\bar H + \mathrm{diag}(\lambda_W, \lambda_b)`, minimised by the
    least-squares classifier Θ* (:func:`least_squares_classifier`). Hence, exactly,

    .. math:: F = \underbrace{\tfrac12\operatorname{tr}(W^\star\Sigma_W W^{\star\top})
              + \tfrac{\lambda_H}2 N\operatorname{tr}\Sigma_W}_{L_{NC1}}
              + \underbrace{\tfrac1{2N}\sum_k n_k\lVert W^\star\mu_k + b^\star - e_k\rVert^2
              + \tfrac{\lambda_W}2\lVert W^\star\rVert^2 + \tfrac{\lambda_b}2\lVert b^\star\rVert^2
              + \tfrac{\lambda_H}2\sum_k n_k\lVert\mu_k\rVert^2}_{L_{NC2/3}}
              + \underbrace{\tfrac12\operatorname{tr}\big((\Theta-\Theta^\star)A(\Theta-\Theta^\star)^\top\big)}_{L_\perp}

    (Σ_W the sample-weighted within-class covariance; the cross terms vanish because deviations
    from the class means sum to zero within each class). :math:`L_{NC1}` is everything caused by
    within-class spread, :math:`L_{NC2/3}` is the loss the class means would have with the best
    classifier, :math:`L_\perp` the price of the classifier being off the central path.

    Returns ``{"L_nc1", "L_nc23", "L_perp", "objective"`` (their sum), ``"classifier_gap"``
    (:math:`\lVert\Theta-\Theta^\star\rVert_F/\lVert\Theta^\star\rVert_F`)``}``.
    """
    H = _tensor(features, "features", 2).to(torch.float64)
    labels, K = _labels(labels, num_classes)
    W = _tensor(W, "W", 2).to(torch.float64)
    if W.shape != (K, H.shape[1]):
        raise ValueError(f"W must have shape {(K, H.shape[1])}, got {tuple(W.shape)}")
    if labels.shape[0] != H.shape[0]:
        raise ValueError(f"labels has {labels.shape[0]} entries for {H.shape[0]} feature rows")
    lam_W, lam_b, lam_H = _nonneg(lam_W, "lam_W"), _nonneg(lam_b, "lam_b"), _nonneg(lam_H, "lam_H")
    bias = b is not None
    if bias:
        b = _tensor(b, "b", 1).to(torch.float64)
        if b.shape != (K,):
            raise ValueError(f"b must have shape ({K},), got {tuple(b.shape)}")
    N = H.shape[0]
    Ws, bs = least_squares_classifier(H, labels=labels, num_classes=K, lam_W=lam_W, bias=bias, lam_b=lam_b)
    counts = torch.bincount(labels, minlength=K).to(H.dtype)
    if (counts == 0).any():
        raise ValueError("every class needs at least one sample")
    mu = torch.zeros(K, H.shape[1], dtype=H.dtype).index_add_(0, labels, H) / counts[:, None]
    dev = H - mu[labels]
    Sw = dev.T @ dev / N
    L_nc1 = 0.5 * torch.trace(Ws @ Sw @ Ws.T) + 0.5 * lam_H * N * torch.trace(Sw)
    res = mu @ Ws.T + (bs if bias else 0.0) - torch.eye(K, dtype=H.dtype)
    L_nc23 = (0.5 / N) * (counts * res.pow(2).sum(1)).sum() + 0.5 * lam_W * Ws.pow(2).sum() \
        + 0.5 * lam_H * (counts * mu.pow(2).sum(1)).sum()
    Hb = torch.cat([H, torch.ones(N, 1, dtype=H.dtype)], 1) if bias else H
    reg = torch.full((Hb.shape[1],), lam_W, dtype=H.dtype)
    if bias:
        reg[-1] = lam_b
        L_nc23 = L_nc23 + 0.5 * lam_b * bs.pow(2).sum()
    A = Hb.T @ Hb / N + torch.diag(reg)
    Theta = torch.cat([W, b[:, None]], 1) if bias else W
    Ts = torch.cat([Ws, bs[:, None]], 1) if bias else Ws
    dT = Theta - Ts
    L_perp = 0.5 * torch.trace(dT @ A @ dT.T)
    return {"L_nc1": float(L_nc1), "L_nc23": float(L_nc23), "L_perp": float(L_perp),
            "objective": float(L_nc1 + L_nc23 + L_perp),
            "classifier_gap": float(dT.norm() / Ts.norm().clamp_min(1e-300))}


# ----------------------------------------------------------------------------- deep NC vs low rank
def _dnc_lams(depth: int, lam_W, lam_layers) -> list[float]:
    lam_W = _nonneg(lam_W, "lam_W")
    hidden = _lam_list(lam_W if lam_layers is None else lam_layers, depth - 1)
    return hidden + [lam_W]


def dnc_loss(num_classes: int, n_per_class: int, depth: int, *, lam_H: float, lam_W: float,
             lam_layers=None) -> dict:
    r"""The regularised loss of the best deep-neural-collapse (DNC) configuration of the
    no-bias MSE deep UFM with L = ``depth`` weight matrices (ReLU or linear; Súkeník et al. 2024).

    In a DNC configuration every layer's features are collapsed to class means forming an
    orthogonal frame (no bias: the targets are one-hot, so the frame has rank K, not K−1),
    :math:`H_l = h_l\,Q_lY` with :math:`Q_l` a d×K matrix of orthonormal non-negative columns (the
    first K coordinate vectors), and each layer maps one frame to the next,
    :math:`A_l = w_l\,Q_{l+1}Q_l^\top` (the minimum-norm choice; ReLU acts as the identity on the
    non-negative frames). The output is :math:`sY` with :math:`s = h_1\prod_l w_l`, and

    .. math:: F = \tfrac12(1-s)^2 + \tfrac12\Big[\lambda_H N h_1^2 + \sum_{l=1}^{L} \lambda_l K w_l^2\Big].

    For a fixed product s the bracket is minimised when its L+1 terms are equal (AM–GM), giving
    :math:`(L+1)\,(C s^2)^{1/(L+1)}` with :math:`C = \lambda_H N \prod_l(\lambda_l K)`, so

    .. math:: F_{\mathrm{DNC}} = \min_{s\ge0}\ \tfrac12(1-s)^2 + \tfrac{L+1}2\,C^{1/(L+1)}\,s^{2/(L+1)},

    a 1-D problem (non-convex for L ≥ 2: s = 0, value ½, competes with an interior minimum),
    solved here by a fine grid and a golden-section refinement. ``lam_layers`` are the hidden
    layers' decays (default ``lam_W``); ``lam_W`` is the classifier's. Returns
    ``{"objective", "s", "h", "w"`` (list of the L layer scales, classifier last)``}``.
    """
    K = _int(num_classes, "num_classes", 2)
    n = _int(n_per_class, "n_per_class")
    L = _int(depth, "depth")
    lam_H = _positive(lam_H, "lam_H")
    lams = _dnc_lams(L, lam_W, lam_layers)
    if any(v <= 0 for v in lams):
        raise ValueError("every layer needs a positive weight decay for the DNC closed form")
    N = K * n
    logC = math.log(lam_H * N) + sum(math.log(v * K) for v in lams)
    coef = 0.5 * (L + 1) * math.exp(logC / (L + 1))
    q = 2.0 / (L + 1)

    def f(s):
        return 0.5 * (1 - s) ** 2 + coef * s ** q

    grid = [i / 4000 for i in range(4001)]
    i = min(range(len(grid)), key=lambda j: f(grid[j]))
    lo, hi = max(0.0, grid[i] - 1 / 4000), min(1.0, grid[i] + 1 / 4000)
    phi = (math.sqrt(5) - 1) / 2
    for _ in range(200):
        x1, x2 = hi - phi * (hi - lo), lo + phi * (hi - lo)
        if f(x1) <= f(x2):
            hi = x2
        else:
            lo = x1
    s = (lo + hi) / 2
    if f(0.0) <= f(s):
        s = 0.0
    m = math.exp((logC + 2 * math.log(s)) / (L + 1)) if s > 0 else 0.0
    h = math.sqrt(m / (lam_H * N))
    w = [math.sqrt(m / (v * K)) for v in lams]
    return {"objective": f(s), "s": s, "h": h, "w": w}


def dnc_configuration(num_classes: int, n_per_class: int, depth: int, width: int, *, lam_H: float,
                      lam_W: float, lam_layers=None) -> dict:
    r"""The DNC configuration of :func:`dnc_loss` as explicit tensors (rows convention), ready for
    :func:`ufm_objective` or as ``init`` of :func:`train_ufm`: ``H`` (N×width, row i = h·e_{y_i}),
    ``layers`` (A_l = w_l · diag(1_K, 0)), ``W`` (K×width, w_L·[I_K 0]); needs width ≥ K."""
    K = _int(num_classes, "num_classes", 2)
    n = _int(n_per_class, "n_per_class")
    L = _int(depth, "depth")
    width = _int(width, "width")
    if width < K:
        raise ValueError(f"a rank-K orthogonal frame needs width ≥ K = {K}, got {width}")
    sol = dnc_loss(K, n, L, lam_H=lam_H, lam_W=lam_W, lam_layers=lam_layers)
    E = torch.eye(K, width, dtype=torch.float64)
    labels = class_labels([n] * K)
    H = sol["h"] * E[labels]
    P = torch.zeros(width, width, dtype=torch.float64)
    P[:K, :K] = torch.eye(K, dtype=torch.float64)
    layers = [w * P for w in sol["w"][:-1]]
    W = sol["w"][-1] * E
    return {"H": H, "layers": layers, "W": W, "labels": labels, "objective": sol["objective"]}


def class_mean_spectra(result: UFMResult) -> list[Tensor]:
    r"""Singular values of the (uncentred) K×d class-mean matrix of every layer's features,
    :math:`[\sigma(M_1), \dots, \sigma(M_L)]` — the rank diagnostic of Súkeník et al. (2024)
    (uncentred because with no bias the DNC frame is orthogonal, of rank K)."""
    if not isinstance(result, UFMResult):
        raise TypeError(f"result must be a UFMResult, got {type(result).__name__}")
    if result.labels is None:
        raise ValueError("class-mean spectra need class labels")
    return [torch.linalg.svdvals(result.class_means(l)) for l in range(result.config["depth"])]


def numerical_rank(singular_values: Tensor, rtol: float = 1e-3) -> int:
    r"""The number of singular values above ``rtol`` times the largest:
    :math:`\#\{j: s_j > \mathrm{rtol}\cdot s_1\}` (0 for an all-zero spectrum)."""
    s = _tensor(singular_values, "singular_values", 1)
    rtol = _positive(rtol, "rtol")
    if s.numel() == 0 or float(s.max()) == 0.0:
        return 0
    return int((s > rtol * s.max()).sum())


# ----------------------------------------------------------------------------- regression: NRC
def _psd_sqrt(S: Tensor) -> Tensor:
    ev, U = torch.linalg.eigh((S + S.T) / 2)
    return (U * ev.clamp_min(0).sqrt()) @ U.T


def _nrc3(WWt: Tensor, Sroot: Tensor, gamma: float) -> float:
    ev, U = torch.linalg.eigh(Sroot)
    A = (U * (ev - gamma).clamp_min(0)) @ U.T
    if A.norm() == 0 or WWt.norm() == 0:
        return math.inf
    return float((WWt / WWt.norm() - A / A.norm()).pow(2).sum())


def nrc_metrics(features: Tensor, targets: Tensor, W: Tensor, *, gamma: float | None = None) -> dict:
    r"""Neural regression collapse (Andriopoulos et al. 2024), with t-dimensional targets, as
    squared, scale-free quantities (all 0 under full collapse):

    * NRC1 — the fraction of centred feature energy outside the top-t principal subspace:
      :math:`\lVert\tilde H - \tilde H V_tV_t^\top\rVert_F^2/\lVert\tilde H\rVert_F^2`;
    * NRC2 — the fraction outside the row space of W (t×D):
      :math:`\lVert\tilde H - \tilde H P_W\rVert_F^2/\lVert\tilde H\rVert_F^2`;
    * NRC3 — the distance of the classifier Gram to its closed form in the target covariance
      :math:`\Sigma = \frac1N\tilde Y^\top\tilde Y`:
      :math:`\big\lVert\frac{WW^\top}{\lVert WW^\top\rVert_F} - \frac{(\Sigma^{1/2}-\gamma I)_+}{\lVert(\Sigma^{1/2}-\gamma I)_+\rVert_F}\big\rVert_F^2`.
      In the UFM γ = √(N λ_W λ_H) (:func:`nrc_optimal_gram`); with ``gamma=None`` (a trained
      network, whose effective γ is unknown) it is minimised over γ ∈ [0, λ_max(Σ^{1/2})).

    Returns ``{"nrc1", "nrc2", "nrc3", "nrc_gamma"}``.
    """
    H = _tensor(features, "features", 2).to(torch.float64)
    Y = _tensor(targets, "targets", 2).to(torch.float64)
    W = _tensor(W, "W", 2).to(torch.float64)
    N, D = H.shape
    t = Y.shape[1]
    if Y.shape[0] != N:
        raise ValueError(f"features have {N} rows but targets have {Y.shape[0]}")
    if W.shape != (t, D):
        raise ValueError(f"W must have shape {(t, D)}, got {tuple(W.shape)}")
    if gamma is not None:
        gamma = _nonneg(gamma, "gamma")
    Hc = H - H.mean(0, keepdim=True)
    energy = Hc.pow(2).sum()
    if energy == 0:
        raise ValueError("the centred features are all zero; NRC1/NRC2 are undefined")
    Vt = torch.linalg.svd(Hc, full_matrices=False)[2][:t].T
    nrc1 = float((Hc - Hc @ Vt @ Vt.T).pow(2).sum() / energy)
    Uw, sw, Vw = torch.linalg.svd(W, full_matrices=False)
    r = int((sw > 1e-12 * sw.max()).sum()) if sw.max() > 0 else 0
    Pw = Vw[:r].T
    nrc2 = float((Hc - Hc @ Pw @ Pw.T).pow(2).sum() / energy)
    Yc = Y - Y.mean(0, keepdim=True)
    Sroot = _psd_sqrt(Yc.T @ Yc / N)
    WWt = W @ W.T
    if gamma is None:
        top = float(torch.linalg.eigvalsh(Sroot).max())
        grid = [top * i / 400 for i in range(400)]
        vals = [_nrc3(WWt, Sroot, g) for g in grid]
        i = min(range(len(grid)), key=lambda j: vals[j])
        lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
        phi = (math.sqrt(5) - 1) / 2
        for _ in range(60):
            x1, x2 = hi - phi * (hi - lo), lo + phi * (hi - lo)
            if _nrc3(WWt, Sroot, x1) <= _nrc3(WWt, Sroot, x2):
                hi = x2
            else:
                lo = x1
        cand = [(vals[i], grid[i]), (_nrc3(WWt, Sroot, (lo + hi) / 2), (lo + hi) / 2)]
        nrc3, gamma = min(cand)
    else:
        nrc3 = _nrc3(WWt, Sroot, gamma)
    return {"nrc1": nrc1, "nrc2": nrc2, "nrc3": nrc3, "nrc_gamma": gamma}


def nrc_optimal_gram(targets: Tensor, *, lam_W: float, lam_H: float, bias: bool = True) -> Tensor:
    r""":math:`WW^\top` at the global optimum of the regression UFM (t×t), in closed form.

    At any critical point of the UFM with weight decay the two stationarity conditions, multiplied
    by W and H, give :math:`\lambda_W W^\top W = \lambda_H H^\top H`; hence for :math:`Z = HW^\top`,
    :math:`Z^\top Z = \frac{\lambda_W}{\lambda_H}(WW^\top)^2`. At the optimum Z is the soft-thresholded
    centred target matrix (:func:`mse_ufm_optimum`): with :math:`\tilde Y = U\mathrm{diag}(\sigma)V^\top`,
    :math:`Z = U\mathrm{diag}((\sigma - Nc)_+)V^\top` and :math:`\sigma_j = \sqrt{N\lambda_j(\Sigma)}`, so

    .. math:: WW^\top = \sqrt{\lambda_H/\lambda_W}\;\sqrt N\,\big(\Sigma^{1/2} - \gamma I\big)_+,
              \qquad \gamma = \sqrt{N\lambda_W\lambda_H}

    — the form of Andriopoulos et al. (2024) in this module's normalisation (their
    feature penalty is averaged over samples, ours is summed; D ≥ t assumed).
    ``bias=True`` (free bias) uses the centred targets, ``False`` the raw second moment.
    """
    Y = _tensor(targets, "targets", 2).to(torch.float64)
    lam_W, lam_H = _positive(lam_W, "lam_W"), _positive(lam_H, "lam_H")
    if bias:
        Y = Y - Y.mean(0, keepdim=True)
    N = Y.shape[0]
    Sroot = _psd_sqrt(Y.T @ Y / N)
    ev, U = torch.linalg.eigh(Sroot)
    gamma = math.sqrt(N * lam_W * lam_H)
    return math.sqrt(lam_H / lam_W) * math.sqrt(N) * (U * (ev - gamma).clamp_min(0)) @ U.T


# ----------------------------------------------------------------------------- Hadamard initialisation
def hadamard(K: int, *, dtype=torch.float64) -> Tensor:
    r"""The K×K Sylvester–Hadamard matrix (entries ±1, :math:`HH^\top = KI`), K a power of 2:
    :math:`H_1 = [1]`, :math:`H_{2m} = \begin{pmatrix}H_m & H_m\\ H_m & -H_m\end{pmatrix}`, i.e.
    :math:`H_{ij} = (-1)^{\mathrm{popcount}(i\,\&\,j)}`. Its first column is all ones."""
    K = _int(K, "K")
    if K & (K - 1):
        raise ValueError(f"the Sylvester construction needs K a power of 2, got {K}")
    Hm = torch.ones(1, 1, dtype=dtype)
    while Hm.shape[0] < K:
        Hm = torch.cat([torch.cat([Hm, Hm], 1), torch.cat([Hm, -Hm], 1)], 0)
    return Hm


def hadamard_init(num_classes: int, n_per_class: int, dim: int | None = None, *, sigma: float = 0.05,
                  low: float = 0.5, high: float = 1.5, seed=0) -> dict:
    r"""Hadamard initialisation of the two-layer linear network on standard-basis inputs
    (Garrod et al. 2025) — which is the UFM: input :math:`e_i` gives feature
    :math:`h_i = W_1e_i`, so ``H`` = :math:`W_1^\top` (N×d) and ``W`` = :math:`W_2` (K×d).

    With :math:`Q = \mathrm{hadamard}(K)/\sqrt K` (orthogonal; column 0 is the all-ones mode),
    :math:`P = Q\otimes\mathbf 1_n/\sqrt n` (N×K, orthonormal columns; class-major samples),
    V a d×K matrix with orthonormal columns (Haar, from ``seed``), :math:`a, b \sim U[\text{low},
    \text{high}]^K`:

    .. math:: W_1 = \sigma V\mathrm{diag}(a)P^\top,\qquad W_2 = \sigma Q\mathrm{diag}(b)V^\top,
              \qquad Z = W_2W_1 = Q\,\mathrm{diag}(\alpha\beta)\,P^\top,\ \alpha = \sigma a,\ \beta = \sigma b.

    Why the structure survives cross-entropy GD: with Sylvester Q, a matrix
    :math:`Q\mathrm{diag}(m)Q^\top` has entries depending only on i XOR j; the column-wise softmax
    keeps that property, so the CE gradient :math:`G = (\mathrm{softmax}(Z) - Y)/N` is again
    :math:`Q\mathrm{diag}(g)P^\top` and the updates only rescale α, β (:func:`hadamard_reduced_gd`).
    ``dim`` d defaults to 2K (d ≥ K required). Returns ``H, W, Q, P, V, alpha, beta, labels``.
    """
    K = _int(num_classes, "num_classes", 2)
    n = _int(n_per_class, "n_per_class")
    d = 2 * K if dim is None else _int(dim, "dim")
    if d < K:
        raise ValueError(f"need dim ≥ K = {K} for orthonormal V, got {d}")
    sigma = _positive(sigma, "sigma")
    low, high = _nonneg(low, "low"), _nonneg(high, "high")
    if not low < high:
        raise ValueError(f"need low < high, got [{low}, {high}]")
    g = _generator(seed)
    Q = hadamard(K) / math.sqrt(K)
    P = torch.kron(Q, torch.ones(n, 1, dtype=torch.float64) / math.sqrt(n))
    A = torch.randn(d, K, generator=g, dtype=torch.float64)
    V, R = torch.linalg.qr(A)
    V = V * torch.sign(torch.diagonal(R))[None, :]
    a = low + (high - low) * torch.rand(K, generator=g, dtype=torch.float64)
    bb = low + (high - low) * torch.rand(K, generator=g, dtype=torch.float64)
    W1 = sigma * V @ torch.diag(a) @ P.T
    W2 = sigma * Q @ torch.diag(bb) @ V.T
    return {"H": W1.T.contiguous(), "W": W2, "Q": Q, "P": P, "V": V, "alpha": sigma * a, "beta": sigma * bb,
            "labels": class_labels([n] * K)}


def hadamard_reduced_gd(alpha: Tensor, beta: Tensor, n_per_class: int, *, lr: float, steps: int,
                        weight_decay: float = 0.0, log_every: int | None = None, progress: bool = False) -> dict:
    r"""Cross-entropy gradient descent under Hadamard initialisation, reduced to 2K scalars.

    With :math:`W_1 = V\mathrm{diag}(\alpha)P^\top`, :math:`W_2 = Q\mathrm{diag}(\beta)V^\top`
    (:func:`hadamard_init`) and mean CE over N = nK samples, the class-k logits are column k of
    :math:`M = Q\,\mathrm{diag}(\alpha\beta/\sqrt n)\,Q^\top`; the column-wise softmax
    :math:`S = Q\,\mathrm{diag}(\mu)\,Q^\top` is diagonalised by Q (XOR invariance), so the
    gradient w.r.t. Z is :math:`Q\,\mathrm{diag}(g)P^\top` with :math:`g = \sqrt n(\mu - 1)/N` and GD
    with weight decay λ on both layers becomes

    .. math:: \alpha \leftarrow \alpha - \eta(g\beta + \lambda\alpha),\qquad
              \beta \leftarrow \beta - \eta(g\alpha + \lambda\beta).

    :math:`\mu_0 = 1` (softmax columns sum to one), so the all-ones mode gets no gradient.
    Returns ``{"alpha", "beta"`` (final), ``"steps"``, ``"singular_values"`` (αβ at the logged
    steps, a list)``}``.
    """
    alpha = _tensor(alpha, "alpha", 1).to(torch.float64).clone()
    beta = _tensor(beta, "beta", 1).to(torch.float64).clone()
    if alpha.shape != beta.shape:
        raise ValueError(f"alpha and beta must have the same shape, got {tuple(alpha.shape)} and {tuple(beta.shape)}")
    K = alpha.shape[0]
    hadamard(K)  # validates K
    n = _int(n_per_class, "n_per_class")
    lr, steps, lam = _positive(lr, "lr"), _int(steps, "steps"), _nonneg(weight_decay, "weight_decay")
    log_every = max(1, steps // 100) if log_every is None else _int(log_every, "log_every")
    from tqdm.auto import tqdm

    Q = hadamard(K) / math.sqrt(K)
    N = n * K
    logged_steps, svs = [], []
    for t in tqdm(range(steps + 1), desc="reduced GD", disable=not progress, leave=False):
        if t % log_every == 0 or t == steps:
            logged_steps.append(t)
            svs.append(alpha * beta)
        if t == steps:
            break
        M = Q @ torch.diag(alpha * beta / math.sqrt(n)) @ Q.T
        S = torch.softmax(M, dim=0)
        mu = torch.diagonal(Q.T @ S @ Q)
        gz = math.sqrt(n) * (mu - 1.0) / N
        alpha, beta = alpha - lr * (gz * beta + lam * alpha), beta - lr * (gz * alpha + lam * beta)
    return {"alpha": alpha, "beta": beta, "steps": logged_steps, "singular_values": svs}


def principal_angles(A: Tensor, B: Tensor, *, degrees: bool = True) -> Tensor:
    r"""Principal angles between the column spans of A (m×p) and B (m×q), ascending, min(p, q) of them
    (Björck & Golub 1973). With orthonormal bases :math:`Q_A, Q_B` the cosines are the singular
    values of :math:`Q_A^\top Q_B` and the sines those of :math:`(I - Q_AQ_A^\top)Q_B`; the sine
    formula is used below 45° where the cosine one loses all precision."""
    A = _tensor(A, "A", 2).to(torch.float64)
    B = _tensor(B, "B", 2).to(torch.float64)
    if A.shape[0] != B.shape[0]:
        raise ValueError(f"A and B must have the same number of rows, got {A.shape[0]} and {B.shape[0]}")

    def basis(X, name):
        U, s, _ = torch.linalg.svd(X, full_matrices=False)
        r = int((s > 1e-12 * s.max()).sum()) if s.numel() and s.max() > 0 else 0
        if r < X.shape[1]:
            raise ValueError(f"{name} must have full column rank ({X.shape[1]}), got rank {r}")
        return U[:, :r]

    QA, QB = basis(A, "A"), basis(B, "B")
    if QA.shape[1] < QB.shape[1]:
        QA, QB = QB, QA
    ang_cos = torch.arccos(torch.linalg.svdvals(QA.T @ QB).clamp(-1, 1))          # ascending angles
    ang_sin = torch.arcsin(torch.linalg.svdvals(QB - QA @ (QA.T @ QB)).clamp(0, 1)).flip(0)  # ascending
    ang = torch.where(ang_sin < math.pi / 4, ang_sin, ang_cos)
    return torch.rad2deg(ang) if degrees else ang


def singular_drift(W0: Tensor, H0: Tensor, W: Tensor, H: Tensor, *, left: Tensor | None = None,
                   right: Tensor | None = None) -> dict:
    r"""How far the singular structure of the logits :math:`Z = WH^\top` (K×N) has moved since
    :math:`Z_0 = W_0H_0^\top` (two-layer network / UFM, rows convention).

    * ``offdiag`` — :math:`\lVert\mathrm{off}(L_0^\top Z R_0)\rVert_F/\lVert Z\rVert_F` with
      :math:`L_0` (K×K), :math:`R_0` (N×K) the initial singular vectors (``left``/``right``, default
      the SVD of Z_0): 0 while the singular vectors stay fixed, insensitive to their order.
    * ``angle_samples`` — the largest principal angle (degrees) between the row spaces of the
      class-centred logits :math:`CZ_0` and :math:`CZ` (:math:`C = I - \frac1K\mathbf 1\mathbf 1^\top`;
      rank K−1): the all-ones mode is removed because softmax ignores it, so its singular value
      may shrink or swap order with the others without counting as drift.
    * ``angle_features`` — the same for the row spaces of :math:`CW_0` and :math:`CW` (in feature space).
    """
    W0, H0, W, H = (_tensor(x, nm, 2).to(torch.float64) for x, nm in ((W0, "W0"), (H0, "H0"), (W, "W"), (H, "H")))
    if W0.shape != W.shape or H0.shape != H.shape or W.shape[1] != H.shape[1]:
        raise ValueError("W0/W (K×d) and H0/H (N×d) must have matching shapes")
    K = W.shape[0]
    Z0, Z = W0 @ H0.T, W @ H.T
    if left is None or right is None:
        U, _, Vh = torch.linalg.svd(Z0, full_matrices=False)
        left = U if left is None else left
        right = Vh.T if right is None else right
    M = left.to(torch.float64).T @ Z @ right.to(torch.float64)
    off = M - torch.diag(torch.diagonal(M))
    C = torch.eye(K, dtype=torch.float64) - 1.0 / K

    def rowspace(X):
        return torch.linalg.svd(C @ X, full_matrices=False)[2][: K - 1].T

    return {"offdiag": float(off.norm() / Z.norm()),
            "angle_samples": float(principal_angles(rowspace(Z0), rowspace(Z)).max()),
            "angle_features": float(principal_angles(rowspace(W0), rowspace(W)).max())}


# ----------------------------------------------------------------------------- a real regression task
MNIST1D_LATENTS = ("scale", "shear", "shift", "padding")


def mnist1d_latents(n_samples: int, *, seed: int = 0, latents: Sequence[str] = ("scale", "shear", "shift")):
    r"""MNIST-1D signals together with the latent parameters that generated them (Greydanus &
    Kobak 2020) — a regression task with known multivariate targets.

    Re-implements the ``mnist1d`` package's transform with the random draws made explicit (the
    package does not return them): a digit template (balanced over the 10 digits) is padded by
    ``padding`` ∈ {36..60} zeros, stretched to length 72, multiplied by
    ``scale`` = 1 + 0.4(u − ½), circularly shifted by ``shift`` ∈ {0..47}, given correlated
    background noise and i.i.d. noise, sheared by ``shear`` = 0.75(u − ½) and subsampled to 40
    points; signals are standardised globally as in the package. Draws come from a NumPy
    ``Generator`` seeded with ``seed``; no global state is touched.

    Returns ``(X, Y, digits)``: X (N×40, float32), Y (N×t, the chosen ``latents`` standardised to
    mean 0 and variance 1, float64), digits (N, int64).
    """
    import numpy as np
    from scipy.ndimage import gaussian_filter
    from mnist1d.data import get_templates

    n_samples = _int(n_samples, "n_samples", 10)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    latents = list(latents)
    if not latents:
        raise ValueError("choose at least one latent")
    for name in latents:
        _choice(name, "latent", MNIST1D_LATENTS)
    rng = np.random.default_rng(seed)
    tpl = get_templates()["x"]
    L_mid, L_out = 12 + 60, 40

    def interp(x, n):
        return np.interp(np.linspace(0, 1, n), np.linspace(0, 1, len(x)), x)

    xs, lat, digits = [], [], []
    for i in range(n_samples):
        d = i % 10
        p = int(rng.integers(36, 61))
        scale = 1 + 0.4 * (rng.random() - 0.5)
        shift = int(rng.integers(0, 48))
        x = interp(np.concatenate([tpl[d] + 1e-8, np.zeros(p)]), L_mid) * scale
        x = np.roll(x, shift)
        mask = x != 0
        x = mask * x + (1 - mask) * gaussian_filter(0.25 * rng.standard_normal(L_mid), 2)
        x = x + 2e-2 * rng.standard_normal(L_mid)
        shear = 0.75 * (rng.random() - 0.5)
        x = x - shear * np.linspace(-0.5, 0.5, L_mid)
        xs.append(interp(x, L_out))
        lat.append({"scale": scale, "shear": shear, "shift": shift, "padding": p})
        digits.append(d)
    X = np.stack(xs)
    X = (X - X.mean()) / X.std()
    Y = np.array([[r[name] for name in latents] for r in lat], dtype=np.float64)
    Y = (Y - Y.mean(0)) / Y.std(0)
    return (torch.from_numpy(X.astype(np.float32)), torch.from_numpy(Y),
            torch.tensor(digits, dtype=torch.long))


def train_regression_mlp(X: Tensor, Y: Tensor, *, hidden: int = 128, dim: int = 32, depth: int = 2,
                         weight_decay: float = 1e-3, lr: float = 3e-3, steps: int = 2000,
                         optimizer: str = "adam", momentum: float = 0.9, log_every: int | None = None,
                         seed=0, progress: bool = True) -> dict:
    r"""Train an MLP regressor full-batch and record neural regression collapse along the way.

    Architecture: ``depth`` hidden ReLU layers (``hidden`` units, the last one ``dim`` units: the
    penultimate features h(x)), then a linear head :math:`\hat y = Wh(x) + b` (W t×dim).
    Objective :math:`\frac1{2N}\lVert\hat Y - Y\rVert_F^2 + \frac\lambda2\lVert\theta\rVert^2` over all
    weights and biases (λ = ``weight_decay``), minimised by full-batch Adam (``lr``) in float64.
    Initialisation from ``seed`` (torch default layer init under a private generator).
    Returns ``{"features"`` (N×dim), ``"W"``, ``"b"``, ``"history"`` (DataFrame: step, loss, r2,
    nrc1, nrc2, nrc3), ``"model"``}``; NRC3 is minimised over γ (:func:`nrc_metrics`).
    """
    import pandas as pd
    from tqdm.auto import tqdm

    X = _tensor(X, "X", 2).to(torch.float64)
    Y = _tensor(Y, "Y", 2).to(torch.float64)
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"X has {X.shape[0]} rows but Y has {Y.shape[0]}")
    hidden, dim, depth = _int(hidden, "hidden"), _int(dim, "dim"), _int(depth, "depth")
    _choice(optimizer, "optimizer", ("adam", "sgd"))
    momentum = _nonneg(momentum, "momentum")
    lam, lr, steps = _nonneg(weight_decay, "weight_decay"), _positive(lr, "lr"), _int(steps, "steps")
    log_every = max(1, steps // 50) if log_every is None else _int(log_every, "log_every")
    g = _generator(seed)
    sizes = [X.shape[1]] + [hidden] * (depth - 1) + [dim]
    mods = []
    for i in range(depth):
        lin = torch.nn.Linear(sizes[i], sizes[i + 1], dtype=torch.float64)
        bound = 1 / math.sqrt(sizes[i])
        with torch.no_grad():
            lin.weight.copy_((torch.rand(lin.weight.shape, generator=g, dtype=torch.float64) * 2 - 1) * bound)
            lin.bias.copy_((torch.rand(lin.bias.shape, generator=g, dtype=torch.float64) * 2 - 1) * bound)
        mods += [lin, torch.nn.ReLU()]
    body = torch.nn.Sequential(*mods)
    head = torch.nn.Linear(dim, Y.shape[1], dtype=torch.float64)
    with torch.no_grad():
        bound = 1 / math.sqrt(dim)
        head.weight.copy_((torch.rand(head.weight.shape, generator=g, dtype=torch.float64) * 2 - 1) * bound)
        head.bias.zero_()
    model = torch.nn.Sequential(body, head)
    if optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=lam)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=lam)
    var = Y.var(0, unbiased=False).sum()
    rows = []

    def log(step):
        with torch.no_grad():
            Hf = body(X)
            pred = head(Hf)
            mse = (pred - Y).pow(2).sum(1).mean()
            row = {"step": step, "loss": float(0.5 * mse), "r2": float(1 - mse / var)}
            row.update(nrc_metrics(Hf, Y, head.weight))
        rows.append(row)

    for t in tqdm(range(steps), desc="regression MLP", disable=not progress, leave=False):
        if t % log_every == 0:
            log(t)
        opt.zero_grad()
        loss = 0.5 * (model(X) - Y).pow(2).sum(1).mean()
        loss.backward()
        opt.step()
    log(steps)
    with torch.no_grad():
        feats = body(X)
    return {"features": feats, "W": head.weight.detach().clone(), "b": head.bias.detach().clone(),
            "history": pd.DataFrame(rows), "model": model}
