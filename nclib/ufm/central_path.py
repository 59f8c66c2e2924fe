"""MSE: the least-squares classifier and the central-path decomposition (Han, Papyan & Donoho 2022)."""

from __future__ import annotations

import pandas as pd
import torch
from torch import Tensor

from ._common import _labels, _nonneg, _tensor
from .closed_forms import _target_matrix

__all__ = ["least_squares_classifier", "central_path_decomposition", "network_central_path"]


# ----------------------------------------------------------------------------- MSE: the central path
def least_squares_classifier(
    features: Tensor,
    *,
    labels: Tensor | None = None,
    num_classes: int | None = None,
    targets: Tensor | None = None,
    lam_W: float = 0.0,
    bias: bool = True,
    lam_b: float = 0.0,
) -> tuple[Tensor, Tensor | None]:
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


def central_path_decomposition(
    features: Tensor,
    W: Tensor,
    b: Tensor | None = None,
    *,
    labels: Tensor,
    num_classes: int | None = None,
    lam_W: float = 0.0,
    lam_b: float = 0.0,
    lam_H: float = 0.0,
) -> dict:
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
    L_nc23 = (
        (0.5 / N) * (counts * res.pow(2).sum(1)).sum()
        + 0.5 * lam_W * Ws.pow(2).sum()
        + 0.5 * lam_H * (counts * mu.pow(2).sum(1)).sum()
    )
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
    return {
        "L_nc1": float(L_nc1),
        "L_nc23": float(L_nc23),
        "L_perp": float(L_perp),
        "objective": float(L_nc1 + L_nc23 + L_perp),
        "classifier_gap": float(dT.norm() / Ts.norm().clamp_min(1e-300)),
    }


def network_central_path(run, epochs=None) -> pd.DataFrame:
    r"""The central-path decomposition of :func:`central_path_decomposition` along the training of a
    real network (Han et al. 2022, section 4): for every kept epoch of ``run`` (a
    :class:`nclib.train.Run` of ``loss="mse"`` trained with ``fit(cfg, keep_states=...)``), the
    penultimate training features H and the last layer (W, b) of that epoch are split as

    .. math:: \tfrac1{2N}\lVert HW^\top+\mathbf 1b^\top-Y\rVert_F^2+\tfrac{\lambda}2(\lVert W\rVert_F^2+\lVert b\rVert^2)
              = \underbrace{L_{NC1}+L_{NC2/3}}_{L_{LS}(H)} + L_\perp ,

    with λ the run's weight decay (SGD/AdamW decay every parameter, the bias included, so
    λ_W = λ_b = λ; the features carry no penalty of their own, λ_H = 0). :math:`L_{LS}` is the
    loss of the least-squares (ridge) classifier of the current features, :math:`L_\perp` the
    price of the network's classifier being off the central path. ``epochs`` (default: every kept
    epoch) selects epochs of ``run.states``. Returns one row per epoch: ``epoch``, ``L_nc1``,
    ``L_nc23``, ``L_ls``, ``L_perp``, ``perp_ratio`` (:math:`L_\perp/L_{LS}`),
    ``classifier_gap`` (:math:`\lVert\Theta-\Theta^\star\rVert_F/\lVert\Theta^\star\rVert_F`).
    """
    for attr in ("config", "states", "features_at", "model_at"):
        if not hasattr(run, attr):
            raise TypeError(f"run must be an nclib.train.Run (it has no {attr!r}), got {type(run).__name__}")
    if run.config.loss != "mse":
        raise ValueError(f"the central path is an MSE construct; this run used loss={run.config.loss!r}")
    kept = sorted(run.states)
    if epochs is None:
        epochs = kept
    elif isinstance(epochs, (str, bytes)) or not hasattr(epochs, "__iter__"):
        raise TypeError(f"epochs must be a sequence of kept epochs, got {type(epochs).__name__}")
    epochs = list(epochs)
    missing = [e for e in epochs if e not in run.states]
    if not kept or missing:
        raise ValueError(
            f"epochs {missing or '(none kept)'} have no kept state; kept: {kept} (fit(cfg, keep_states=...))"
        )
    lam = float(run.config.weight_decay)
    rows = []
    for e in epochs:
        H, y = run.features_at(e)
        head = run.model_at(e).classifier
        W = head.weight.detach().to(torch.float64)
        b = head.bias.detach().to(torch.float64) if getattr(head, "bias", None) is not None else None
        cp = central_path_decomposition(H, W, b, labels=y, num_classes=W.shape[0], lam_W=lam, lam_b=lam)
        L_ls = cp["L_nc1"] + cp["L_nc23"]
        rows.append(
            {
                "epoch": int(e),
                "L_nc1": cp["L_nc1"],
                "L_nc23": cp["L_nc23"],
                "L_ls": L_ls,
                "L_perp": cp["L_perp"],
                "perp_ratio": cp["L_perp"] / L_ls if L_ls > 0 else float("nan"),
                "classifier_gap": cp["classifier_gap"],
            }
        )
    return pd.DataFrame(rows)
