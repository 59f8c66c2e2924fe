"""The book's standard figures (matplotlib + seaborn; every axis labelled).

* :func:`collapse_panels` — the NC panels over training (Papyan et al. 2020, Figs. 2–7).
* :func:`etf_3d` / :func:`collapse_animation` — class means, classifier rows and the simplex-ETF
  vertices of a K = 4 problem in their 3-D span, across epochs (the book's answer to Papyan,
  Han & Donoho's collapse animation); the animation renders to HTML/JS so it plays in the book
  and on Colab.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

__all__ = ["set_theme", "collapse_panels", "PANELS", "etf_3d", "collapse_animation", "etf_frame"]

# (history column(s), title, y label, log scale)
PANELS = [
    (("train_error", "test_error"), "Error", "error", False),
    (("nc1",), "NC1: within-class variability", r"Tr$(\Sigma_W\Sigma_B^+)/K$", True),
    (("equinorm_means", "equinorm_classifier"), "NC2: equal norms", "std/mean of norms", True),
    (("equiangularity",), "NC2: equal angles", "std of cosines", True),
    (("max_angle",), "NC2: maximal angles", r"mean $|\cos+1/(K-1)|$", True),
    (("self_duality",), "NC3: self-duality", r"$\|W/\|W\| - \tilde M/\|\tilde M\|\|_F^2$", True),
    (("ncc_mismatch",), "NC4: agreement with NCC", "mismatch fraction", False),
    (("cdnv", "test_cdnv"), "CDNV (train / test)", "class-distance normalised variance", True),
]

_LABELS = {"train_error": "train", "test_error": "test", "equinorm_means": "class means",
           "equinorm_classifier": "classifier", "cdnv": "train", "test_cdnv": "test"}


def set_theme() -> None:
    """The book's plotting style (seaborn whitegrid, compact)."""
    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind", font_scale=0.9)


def _as_runs(histories) -> dict:
    if isinstance(histories, pd.DataFrame):
        return {"": histories}
    if isinstance(histories, dict) and all(isinstance(v, pd.DataFrame) for v in histories.values()):
        return histories
    raise TypeError("histories must be a DataFrame or a dict {label: DataFrame}")


def collapse_panels(histories, *, panels=None, tpt_epoch: int | None = None, ncols: int = 4, title: str | None = None):
    """Plot the NC metrics of one history (or ``{label: history}``) against epochs (log axis).

    ``tpt_epoch`` draws a vertical line where the terminal phase (zero training error) starts.
    Returns the matplotlib figure."""
    import matplotlib.pyplot as plt

    runs = _as_runs(histories)
    panels = PANELS if panels is None else panels
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 2.9 * nrows), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (cols, ttl, ylab, logy) in zip(axes.flat, panels):
        for r, (lab, h) in enumerate(runs.items()):
            x = h["epoch"].to_numpy(dtype=float)
            for c, col in enumerate(cols):
                if col not in h:
                    continue
                y = h[col].to_numpy(dtype=float)
                name = " ".join(s for s in (lab, _LABELS.get(col, "") if len(cols) > 1 else "") if s)
                ax.plot(x, y, marker="o", ms=2.5, lw=1.3, ls="-" if c == 0 else "--",
                        color=colours[(r if len(runs) > 1 else c) % len(colours)], label=name or None)
        ax.set_xscale("symlog", linthresh=1)
        if logy:
            ax.set_yscale("log")
        ax.set_title(ttl)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylab)
        if tpt_epoch is not None:
            ax.axvline(tpt_epoch, color="grey", ls=":", lw=1)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def etf_frame(snapshot: dict, *, global_mean: torch.Tensor | None = None):
    """3-D coordinates of one K = 4 snapshot in a fixed frame.

    The centred class means are mapped to their nearest simplex ETF (:func:`nclib.geometry.nearest_etf`),
    whose span gives the 3-D subspace; the frame is then rotated so that this ETF sits on the
    canonical vertices. Returns ``(means3, W3, vertices)``, each K×3, means and classifier rows
    scaled to unit average norm."""
    from .geometry import etf_coordinates, nearest_etf

    M = snapshot["means"].double()
    W = snapshot["W"].double()
    K = M.shape[0]
    if K != 4:
        raise ValueError(f"the 3-D view needs K = 4 classes, got K={K}")
    Mc = M - (M.mean(0) if global_mean is None else global_mean.double())
    E, _ = nearest_etf(Mc)
    Q = torch.linalg.svd(E, full_matrices=False)[2][:3].T  # D×3 basis of the ETF span
    C = etf_coordinates(K)  # K×3 canonical vertices
    # orthogonal R with (E Q) R ≈ C
    U, _, Vh = torch.linalg.svd((E @ Q).T @ C)
    R = U @ Vh
    m3 = Mc @ Q @ R
    w3 = W @ Q @ R
    m3 = m3 / m3.norm(dim=1).mean()
    w3 = w3 / w3.norm(dim=1).mean().clamp_min(1e-12)
    return m3.numpy(), w3.numpy(), C.numpy()


def _draw_frame(ax, m3, w3, C, title):
    ax.cla()
    cols = ["tab:blue", "tab:orange", "tab:green", "tab:red"]
    for k in range(4):
        ax.plot(*zip(np.zeros(3), C[k]), color="0.6", lw=1, ls=":")
        ax.scatter(*C[k], color="0.4", s=40, marker="^")
        ax.plot(*zip(np.zeros(3), m3[k]), color=cols[k], lw=2.2)
        ax.scatter(*m3[k], color=cols[k], s=30)
        ax.plot(*zip(np.zeros(3), w3[k]), color=cols[k], lw=1.2, ls="--")
    ax.set_xlim(-1.2, 1.2)
    ax.set_ylim(-1.2, 1.2)
    ax.set_zlim(-1.2, 1.2)
    ax.set_xlabel("ETF axis 1")
    ax.set_ylabel("ETF axis 2")
    ax.set_zlabel("ETF axis 3")
    ax.set_title(title, fontsize=9)


def etf_3d(snapshots: dict, epochs=None, *, ncols: int = 4):
    """Small multiples: class means (solid), classifier rows (dashed) and ETF vertices (grey
    triangles) of a K = 4 run at the chosen epochs (default: 4 spread over training)."""
    import matplotlib.pyplot as plt

    keys = sorted(snapshots)
    if epochs is None:
        idx = np.unique(np.linspace(0, len(keys) - 1, min(ncols, len(keys))).round().astype(int))
        epochs = [keys[i] for i in idx]
    missing = [e for e in epochs if e not in snapshots]
    if missing:
        raise ValueError(f"no snapshot for epochs {missing}; available: {keys}")
    nrows = math.ceil(len(epochs) / ncols)
    fig = plt.figure(figsize=(3.3 * min(ncols, len(epochs)), 3.3 * nrows))
    for i, e in enumerate(epochs):
        ax = fig.add_subplot(nrows, min(ncols, len(epochs)), i + 1, projection="3d")
        _draw_frame(ax, *etf_frame(snapshots[e]), f"epoch {e}")
    fig.tight_layout()
    return fig


def collapse_animation(snapshots: dict, *, interval: int = 400):
    """The K = 4 collapse as an animation over the logged epochs; returns an ``IPython.display.HTML``
    (matplotlib ``FuncAnimation`` rendered with ``to_jshtml``) that plays in the book and on Colab."""
    import matplotlib.pyplot as plt
    from matplotlib.animation import FuncAnimation
    from IPython.display import HTML

    keys = sorted(snapshots)
    frames = [etf_frame(snapshots[e]) for e in keys]
    fig = plt.figure(figsize=(4.5, 4.5))
    ax = fig.add_subplot(111, projection="3d")

    def update(i):
        _draw_frame(ax, *frames[i], f"epoch {keys[i]}")
        return []

    anim = FuncAnimation(fig, update, frames=len(frames), interval=interval)
    html = anim.to_jshtml(default_mode="once")
    plt.close(fig)
    return HTML(html)
