"""The (deep) UFM objective and its solver :func:`train_ufm` (gradient descent or L-BFGS), with the logged history."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..metrics import measure_features
from ._common import (
    ACTIVATIONS,
    LOSSES,
    NC_KEYS,
    OPTIMIZERS,
    RECORDS,
    _choice,
    _generator,
    _int,
    _labels,
    _nonneg,
    _one_hot,
    _positive,
    _tensor,
    class_labels,
)
from .central_path import central_path_decomposition
from .regression import nrc_metrics

__all__ = ["ufm_forward", "ufm_objective", "UFMResult", "train_ufm", "train_ufm_restarts"]


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


def ufm_objective(
    H: Tensor,
    W: Tensor,
    *,
    labels: Tensor | None = None,
    targets: Tensor | None = None,
    b: Tensor | None = None,
    layers: Sequence[Tensor] = (),
    activation: str = "linear",
    loss: str = "ce",
    lam_H: float = 0.0,
    lam_W: float = 0.0,
    lam_b: float = 0.0,
    lam_layers=0.0,
) -> Tensor:
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
            return float(
                ufm_objective(
                    self.H,
                    self.W,
                    labels=self.labels,
                    targets=self.targets,
                    b=self.b,
                    layers=self.layers,
                    activation=c["activation"],
                    loss=c["loss"],
                    lam_H=c["lam_H"],
                    lam_W=c["lam_W"],
                    lam_b=c["lam_b"],
                    lam_layers=c["lam_layers"],
                )
            )

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
        return measure_features(
            self.features()[-1],
            self.labels,
            self.W.detach(),
            None if self.b is None else self.b.detach(),
            num_classes=self.W.shape[0],
        ).metrics


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


def _problem(
    num_classes,
    n_per_class,
    counts,
    targets,
    dim,
    loss,
    bias,
    lam_H,
    lam_W,
    lam_b,
    depth,
    width,
    activation,
    lam_layers,
    optimizer,
    lr,
    steps,
    init_scale,
    log_every,
    record,
    dtype,
) -> dict:
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
    prob = dict(
        labels=labels,
        targets=Y,
        K=K,
        N=N,
        dim=dim,
        depth=depth,
        width=width,
        d_last=dim if depth == 1 else width,
        loss=loss,
        bias=bias,
        lam_H=lam_H,
        lam_W=lam_W,
        lam_b=lam_b,
        lam_layers=lam_list,
        activation=activation,
        optimizer=optimizer,
        lr=lr,
        steps=steps,
        init_scale=init_scale,
        log_every=log_every,
        record=tuple(record),
        dtype=dtype,
    )
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
        layers.append(
            given(init["layers"][l], f"init['layers'][{l}]", shape) if init.get("layers") is not None else draw(shape)
        )
    if fixed_W is not None:
        W = given(fixed_W, "fixed_W", (K, prob["d_last"]))
    else:
        W = (
            given(init["W"], "init['W']", (K, prob["d_last"]))
            if init.get("W") is not None
            else draw((K, prob["d_last"]))
        )
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
        F = _objective_raw(
            params["H"],
            params["layers"],
            params["W"],
            params["b"],
            prob["labels"],
            prob["targets"],
            prob["loss"],
            prob["activation"],
            prob["lams"],
        )
        Z = feats[-1] @ params["W"].T
        if params["b"] is not None:
            Z = Z + params["b"]
        row = {
            "step": step,
            "objective": float(F),
            "loss": float(_data_loss(Z, prob["labels"], prob["targets"], prob["loss"])),
        }
        if not math.isfinite(row["objective"]):
            return row
        W, b = params["W"], params["b"]
        if "nc" in record:
            m = measure_features(feats[-1], prob["labels"], W, b, num_classes=prob["K"]).metrics
            row.update({k: m[k] for k in NC_KEYS if k in m})
        if "central_path" in record:
            row.update(
                central_path_decomposition(
                    params["H"],
                    W,
                    b,
                    labels=prob["labels"],
                    lam_W=prob["lam_W"],
                    lam_b=prob["lam_b"],
                    lam_H=prob["lam_H"],
                )
            )
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
        return {
            "H": state["H"][r],
            "layers": [A[r] for A in state["layers"]],
            "W": state["W"][r],
            "b": None if state["b"] is None else state["b"][r],
        }

    def log(step, state):
        for r in range(R):
            p = {
                k: (v.detach() if isinstance(v, Tensor) else [a.detach() for a in v] if isinstance(v, list) else v)
                for k, v in unpack(state, r).items()
            }
            row = _record_row(step, p, prob)
            if not math.isfinite(row["objective"]):
                raise FloatingPointError(
                    f"the objective is not finite at step {step} (seed {seeds[r]}); reduce lr (now {lr})"
                )
            if callback is not None:
                extra = callback(step, p)
                if extra:
                    row.update(extra)
            rows[r].append(row)
            if "snapshots" in prob["record"]:
                snaps[r].append(
                    {
                        "step": step,
                        "H": p["H"].clone(),
                        "W": p["W"].clone(),
                        "b": None if p["b"] is None else p["b"].clone(),
                        "layers": [A.clone() for A in p["layers"]],
                    }
                )

    desc = f"UFM {prob['loss'].upper()} L={depth} {prob['optimizer']}" + (f" ×{R}" if R > 1 else "")
    if prob["optimizer"] == "gd":
        state = {
            "H": torch.stack([s["H"] for s in starts]),
            "layers": [torch.stack([s["layers"][l] for s in starts]) for l in range(depth - 1)],
            "W": torch.stack([s["W"] for s in starts]),
            "b": None if starts[0]["b"] is None else torch.stack([s["b"] for s in starts]),
        }
        params = (
            [state["H"], *state["layers"]]
            + ([] if fixed_W is not None else [state["W"]])
            + ([state["b"]] if state["b"] is not None else [])
        )
        with torch.no_grad():
            for t in tqdm(range(steps), desc=desc, disable=not progress, leave=False):
                if t % log_every == 0:
                    log(t, state)
                grads = _gd_gradients(
                    state["H"],
                    state["layers"],
                    state["W"],
                    state["b"],
                    prob["targets"],
                    prob["loss"],
                    prob["activation"],
                    prob["lams"],
                )
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
            opt = torch.optim.LBFGS(
                params,
                lr=lr,
                max_iter=log_every,
                history_size=50,
                line_search_fn="strong_wolfe",
                tolerance_grad=1e-13,
                tolerance_change=1e-16,
            )

            def closure():
                opt.zero_grad()
                F = _objective_raw(
                    H, layers, W, b, prob["labels"], prob["targets"], prob["loss"], prob["activation"], prob["lams"]
                )
                F.backward()
                return F

            done = 0
            with tqdm(total=steps, desc=desc, disable=not progress, leave=False) as bar:
                sub_rows, sub_snaps = rows[r], snaps[r]

                def log1(step):
                    p = {
                        "H": H.detach(),
                        "layers": [A.detach() for A in layers],
                        "W": W.detach(),
                        "b": None if b is None else b.detach(),
                    }
                    row = _record_row(step, p, prob)
                    if not math.isfinite(row["objective"]):
                        raise FloatingPointError(f"the objective is not finite at step {step} (seed {seeds[r]})")
                    if callback is not None:
                        extra = callback(step, p)
                        if extra:
                            row.update(extra)
                    sub_rows.append(row)
                    if "snapshots" in prob["record"]:
                        sub_snaps.append(
                            {
                                "step": step,
                                "H": p["H"].clone(),
                                "W": p["W"].clone(),
                                "b": None if b is None else p["b"].clone(),
                                "layers": [A.clone() for A in p["layers"]],
                            }
                        )

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
            finals.append(
                {
                    "H": H.detach(),
                    "layers": [A.detach() for A in layers],
                    "W": W.detach(),
                    "b": None if b is None else b.detach(),
                }
            )
    out = []
    for r in range(R):
        f = finals[r]
        config = {
            k: prob[k]
            for k in (
                "K",
                "N",
                "dim",
                "depth",
                "width",
                "loss",
                "bias",
                "lam_H",
                "lam_W",
                "lam_b",
                "lam_layers",
                "activation",
                "optimizer",
                "lr",
                "steps",
                "init_scale",
            )
        }
        config.update(
            num_classes=prob["K"], seed=seeds[r] if isinstance(seeds[r], int) else None, fixed_W=fixed_W is not None
        )
        out.append(
            UFMResult(
                H=f["H"].clone(),
                W=f["W"].clone(),
                b=None if f["b"] is None else f["b"].clone(),
                layers=[A.clone() for A in f["layers"]],
                labels=prob["labels"],
                targets=prob["targets"],
                config=config,
                history=pd.DataFrame(rows[r]),
                snapshots=snaps[r],
            )
        )
    return out


def train_ufm(
    *,
    num_classes: int | None = None,
    n_per_class: int | None = None,
    counts=None,
    targets: Tensor | None = None,
    dim: int,
    loss: str = "ce",
    bias: bool = False,
    lam_H: float = 5e-4,
    lam_W: float = 5e-4,
    lam_b: float = 0.0,
    depth: int = 1,
    width: int | None = None,
    activation: str = "linear",
    lam_layers=None,
    optimizer: str = "gd",
    lr: float = 1.0,
    steps: int = 1000,
    init_scale: float = 0.1,
    init: dict | None = None,
    fixed_W: Tensor | None = None,
    log_every: int | None = None,
    record: Sequence[str] = ("nc",),
    callback: Callable | None = None,
    seed=0,
    progress: bool = True,
    dtype=torch.float64,
) -> UFMResult:
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
    prob = _problem(
        num_classes,
        n_per_class,
        counts,
        targets,
        dim,
        loss,
        bias,
        lam_H,
        lam_W,
        lam_b,
        depth,
        width,
        activation,
        lam_layers,
        optimizer,
        lr,
        steps,
        init_scale,
        log_every,
        record,
        dtype,
    )
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
    defaults = dict(
        num_classes=None,
        n_per_class=None,
        counts=None,
        targets=None,
        loss="ce",
        bias=False,
        lam_H=5e-4,
        lam_W=5e-4,
        lam_b=0.0,
        depth=1,
        width=None,
        activation="linear",
        lam_layers=None,
        optimizer="gd",
        lr=1.0,
        steps=1000,
        init_scale=0.1,
        log_every=None,
        record=("nc",),
        dtype=torch.float64,
    )
    unknown = set(kwargs) - set(defaults) - {"dim"}
    if unknown:
        raise TypeError(f"unknown arguments {sorted(unknown)}")
    if "dim" not in kwargs:
        raise TypeError("dim is required")
    a = {**defaults, **kwargs}
    prob = _problem(
        a["num_classes"],
        a["n_per_class"],
        a["counts"],
        a["targets"],
        a["dim"],
        a["loss"],
        a["bias"],
        a["lam_H"],
        a["lam_W"],
        a["lam_b"],
        a["depth"],
        a["width"],
        a["activation"],
        a["lam_layers"],
        a["optimizer"],
        a["lr"],
        a["steps"],
        a["init_scale"],
        a["log_every"],
        a["record"],
        a["dtype"],
    )
    return _run(prob, seeds, init, fixed_W, callback, progress)
