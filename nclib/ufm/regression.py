"""Regression: neural regression collapse (NRC; Andriopoulos et al. 2024) and a real regression task
(MNIST-1D latents, an MLP regressor)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ._common import _choice, _generator, _int, _nonneg, _positive, _tensor

__all__ = ["nrc_metrics", "nrc_optimal_gram", "mnist1d_latents", "train_regression_mlp"]


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
    from mnist1d.data import get_templates
    from scipy.ndimage import gaussian_filter

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
    return (torch.from_numpy(X.astype(np.float32)), torch.from_numpy(Y), torch.tensor(digits, dtype=torch.long))


def train_regression_mlp(
    X: Tensor,
    Y: Tensor,
    *,
    hidden: int = 128,
    dim: int = 32,
    depth: int = 2,
    weight_decay: float = 1e-3,
    lr: float = 3e-3,
    steps: int = 2000,
    optimizer: str = "adam",
    momentum: float = 0.9,
    log_every: int | None = None,
    seed=0,
    progress: bool = True,
) -> dict:
    r"""Train an MLP regressor full-batch and record neural regression collapse along the way.

    Architecture: ``depth`` hidden ReLU layers (``hidden`` units, the last one ``dim`` units: the
    penultimate features h(x)), then a linear head :math:`\hat y = Wh(x) + b` (W t×dim).
    Objective :math:`\frac1{2N}\lVert\hat Y - Y\rVert_F^2 + \frac\lambda2\lVert\theta\rVert^2` over all
    weights and biases (λ = ``weight_decay``), minimised by full-batch Adam (``lr``) in float64, one step per period of
    :func:`nclib.train.engine.run_loop`.
    Initialisation from ``seed`` (torch default layer init under a private generator).
    Returns ``{"features"`` (N×dim), ``"W"``, ``"b"``, ``"history"`` (DataFrame: step, loss, r2,
    nrc1, nrc2, nrc3), ``"model"``}``; NRC3 is minimised over γ (:func:`nrc_metrics`).
    """
    import pandas as pd
    from tqdm.auto import tqdm

    from ..train.engine import Callback, Objective, run_loop

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

    class FullBatch(Objective):  # the whole training set is every step's batch
        def forward(self, batch):
            return 0.5 * (model(X) - Y).pow(2).sum(1).mean(), None

    class Logging(Callback):  # NRC metrics before every log_every-th step, a progress bar
        def period_start(self, t):
            if t % log_every == 0:
                log(t)

        def period_end(self, t):
            bar.update(1)

    bar = tqdm(total=steps, desc="regression MLP", disable=not progress, leave=False)
    try:
        run_loop(opt, range(steps), lambda t: (None,), FullBatch(), [Logging()])
    finally:
        bar.close()
    log(steps)
    with torch.no_grad():
        feats = body(X)
    return {
        "features": feats,
        "W": head.weight.detach().clone(),
        "b": head.bias.detach().clone(),
        "history": pd.DataFrame(rows),
        "model": model,
    }
