"""The book's standard figures (matplotlib + seaborn; every axis labelled).

* :func:`collapse_panels` — the NC panels over training (Papyan et al. 2020, Figs. 2–7).
* :func:`etf_3d` / :func:`collapse_animation` — class means, classifier rows and the simplex-ETF
  vertices of a K = 4 problem in their 3-D span, across epochs (the book's answer to Papyan,
  Han & Donoho's collapse animation); the animation renders to HTML/JS so it plays in the book
  and on Colab.

**Readable at the page width.** The book's text column is ``PAGE_WIDTH_PX`` = 688 CSS px wide
(sphinx-book-theme at a 1280 px window, measured; wider at 1024 and 1440 px); the inline backend
draws at ``DPI`` = 100, so a figure wider than ``PAGE_WIDTH_IN`` = 6.88 in is scaled down in the
page and its fonts with it.
Every figure here is at most that wide with at most three panels per row, and its smallest text
is at least ``MIN_FONT_PX`` = 9 px as rendered (:func:`min_font_px`; ``tests/test_plots.py``).
:func:`set_theme` sets the font sizes and, in IPython, shows every figure through
:func:`fit_to_page` (a wider figure is narrowed to the page, keeping its height and font sizes)
and records the smallest font of the PNG, in px at the PNG's own size, in its metadata
(``nclib-min-font-px``); the browser test scales it to the width the page renders it at.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

__all__ = [
    "set_theme",
    "collapse_panels",
    "PANELS",
    "etf_3d",
    "collapse_animation",
    "etf_frame",
    "PAGE_WIDTH_PX",
    "PAGE_WIDTH_IN",
    "DPI",
    "MIN_FONT_PX",
    "min_font_px",
    "fit_to_page",
    "subplots",
    "png_bytes",
]

PAGE_WIDTH_PX = 688  # the book's content column at a 1280 px window (CSS px, measured)
DPI = 100  # matplotlib's figure dpi, used by the inline backend
PAGE_WIDTH_IN = PAGE_WIDTH_PX / DPI
MIN_FONT_PX = 9.0
PNG_FONT_KEY = "nclib-min-font-px"
# the theme's font sizes (points); the smallest, 8 pt, is 11 px at 100 dpi
FONTS = {
    "font.size": 9.5,
    "axes.titlesize": 10.0,
    "axes.labelsize": 9.0,
    "xtick.labelsize": 8.5,
    "ytick.labelsize": 8.5,
    "legend.fontsize": 8.0,
    "legend.title_fontsize": 8.5,
    "figure.titlesize": 10.5,
}

# (history column(s), title, y label, log scale)
PANELS = [
    (("train_error", "test_error"), "Error", "error", False),
    (("nc1",), "NC1: within-class variability", r"Tr$(\Sigma_W\Sigma_B^+)/K$", True),
    (("equinorm_means", "equinorm_classifier"), "NC2: equal norms", "std/mean of norms", True),
    (("equiangularity",), "NC2: equal angles", "std of cosines", True),
    (("max_angle",), "NC2: maximal angles", r"mean $|\cos+1/(K-1)|$", True),
    (("self_duality",), "NC3: self-duality", r"$\|W/\|W\| - \tilde M/\|\tilde M\|\|_F^2$", True),
    (("ncc_mismatch",), "NC4: agreement with NCC", "mismatch fraction", False),
    (("cdnv", "test_cdnv"), "CDNV (train / test)", "CDNV", True),
]

_LABELS = {
    "train_error": "train",
    "test_error": "test",
    "equinorm_means": "class means",
    "equinorm_classifier": "classifier",
    "cdnv": "train",
    "test_cdnv": "test",
}


def set_theme() -> None:
    """The book's plotting style: seaborn whitegrid, the font sizes of ``FONTS``, ``DPI``; in an
    IPython kernel, figures are shown through :func:`png_bytes` (narrowed to the page width, the
    smallest font recorded in the PNG)."""
    import matplotlib as mpl
    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")
    mpl.rcParams.update({**FONTS, "figure.dpi": DPI})
    _register_png_formatter()


def _register_png_formatter() -> None:
    try:
        from IPython import get_ipython
    except ImportError:
        return
    ip = get_ipython()
    if ip is None or not hasattr(ip, "display_formatter") or not hasattr(ip, "events"):
        return
    import matplotlib.pyplot as plt

    # load the backend now: importing matplotlib-inline installs its own Figure formatter
    getattr(plt, "_get_backend_mod", lambda: None)()
    _ensure_png_formatter()
    # matplotlib-inline (re)installs its own Figure formatter after the cell that activates it,
    # and again when its settings change: put ours back after every cell
    if _ensure_png_formatter not in ip.events.callbacks.get("post_run_cell", []):
        ip.events.register("post_run_cell", _ensure_png_formatter)


def _ensure_png_formatter(*_):
    from IPython import get_ipython
    from matplotlib.figure import Figure

    ip = get_ipython()
    if ip is None:
        return
    formatter = ip.display_formatter.formatters["image/png"]
    try:
        current = formatter.lookup_by_type(Figure)
    except KeyError:
        current = None
    if current is not png_bytes:
        formatter.for_type(Figure, png_bytes)


def _texts(fig):
    from matplotlib.text import Text

    out = [t for t in fig.findobj(Text, include_self=False) if t.figure is fig]
    hidden = set()
    for ax in fig.axes:
        if not ax.get_visible():
            hidden.update(id(t) for t in ax.findobj(Text))
    return [t for t in out if id(t) not in hidden and t.get_visible() and t.get_text().strip()]


def min_font_px(fig, width_px: float = PAGE_WIDTH_PX, dpi: float = DPI) -> float:
    """The smallest font of ``fig`` in CSS px when its PNG (``dpi``, tight bounding box, as the
    inline backend saves it) is shown at most ``width_px`` wide: size in points × dpi/72 × the
    scale min(1, width_px / natural width)."""
    if width_px <= 0 or dpi <= 0:
        raise ValueError(f"width_px and dpi must be positive, got {width_px}, {dpi}")
    fig.canvas.draw()  # tick labels get their text when drawn
    texts = _texts(fig)
    if not texts:
        raise ValueError("the figure has no visible text")
    natural = fig.get_tightbbox(fig.canvas.get_renderer()).width * dpi
    scale = min(1.0, width_px / natural) if natural > 0 else 1.0
    return min(t.get_fontsize() for t in texts) * dpi / 72 * scale


def fit_to_page(fig, width_in: float = PAGE_WIDTH_IN):
    """Narrow a figure wider than ``width_in`` to that width (height and font sizes kept; the
    layout is recomputed), so that it is not scaled down in the page. Returns the figure."""
    import warnings

    w, h = fig.get_size_inches()
    if w > width_in * 1.001:
        fig.set_size_inches(width_in, h)
        engine = fig.get_layout_engine()
        if engine is None or type(engine).__name__ == "TightLayoutEngine":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fig.tight_layout()
    return fig


def png_bytes(fig) -> bytes:
    """The figure as the book shows it: fitted to the page, PNG at ``DPI`` with a tight bounding
    box, its smallest font in px at the PNG's own size in the PNG text chunk ``nclib-min-font-px``
    (shown ``w`` px wide, a PNG ``W`` px wide has its smallest text at that value × w/W)."""
    import io

    fit_to_page(fig)
    try:
        px = f"{min_font_px(fig, width_px=math.inf):.2f}"
    except ValueError:  # no text at all
        px = "inf"
    buf = io.BytesIO()
    fig.canvas.print_figure(buf, format="png", dpi=DPI, bbox_inches="tight", metadata={PNG_FONT_KEY: px})
    return buf.getvalue()


def subplots(nrows: int = 1, ncols: int = 1, *, height: float | None = None, width: float | None = None, **kwargs):
    """``plt.subplots`` sized for the page: at most three panels per row, ``width`` (default the
    page width ``PAGE_WIDTH_IN``; 0.6 of it for one panel) and ``height`` per row (default 3.0 in
    for three panels a row, 3.3 in otherwise). Returns ``(fig, axes)`` as ``plt.subplots`` does."""
    import matplotlib.pyplot as plt

    if not (isinstance(nrows, int) and isinstance(ncols, int)) or nrows < 1 or ncols < 1:
        raise ValueError(f"nrows and ncols must be positive ints, got {nrows!r}, {ncols!r}")
    if ncols > 3:
        raise ValueError(f"at most 3 panels per row are readable at the page width, got ncols={ncols}")
    if width is None:
        width = PAGE_WIDTH_IN * (0.6 if ncols == 1 else 1.0)
    width = min(width, PAGE_WIDTH_IN)
    if height is None:
        height = 3.0 if ncols == 3 else 3.3
    kwargs.setdefault("layout", "tight")
    return plt.subplots(nrows, ncols, figsize=(width, height * nrows), **kwargs)


def _as_runs(histories) -> dict:
    if isinstance(histories, pd.DataFrame):
        return {"": histories}
    if isinstance(histories, dict) and all(isinstance(v, pd.DataFrame) for v in histories.values()):
        return histories
    raise TypeError("histories must be a DataFrame or a dict {label: DataFrame}")


def collapse_panels(histories, *, panels=None, tpt_epoch: int | None = None, ncols: int = 3, title: str | None = None):
    """Plot the NC metrics of one history (or ``{label: history}``) against epochs (log axis).

    ``tpt_epoch`` draws a vertical line where the terminal phase (zero training error) starts.
    At most three panels per row (``ncols`` ≤ 3), the page width wide. Returns the matplotlib figure."""
    import matplotlib.pyplot as plt

    runs = _as_runs(histories)
    panels = PANELS if panels is None else panels
    if not isinstance(ncols, int) or not 1 <= ncols <= 3:
        raise ValueError(f"ncols must be 1, 2 or 3 (readable at the page width), got {ncols!r}")
    ncols = min(ncols, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(PAGE_WIDTH_IN * (0.6 if ncols == 1 else 1.0), 2.6 * nrows), squeeze=False
    )
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (cols, ttl, ylab, logy) in zip(axes.flat, panels):
        for r, (lab, h) in enumerate(runs.items()):
            x = h["epoch"].to_numpy(dtype=float)
            for c, col in enumerate(cols):
                if col not in h:
                    continue
                y = h[col].to_numpy(dtype=float)
                name = " ".join(s for s in (lab, _LABELS.get(col, "") if len(cols) > 1 else "") if s)
                ax.plot(
                    x,
                    y,
                    marker="o",
                    ms=2.5,
                    lw=1.3,
                    ls="-" if c == 0 else "--",
                    color=colours[(r if len(runs) > 1 else c) % len(colours)],
                    label=name or None,
                )
        ax.set_xscale("symlog", linthresh=1)
        if logy:
            ax.set_yscale("log")
        ax.set_title(ttl)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylab)
        if tpt_epoch is not None:
            ax.axvline(tpt_epoch, color="grey", ls=":", lw=1)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    for ax in list(axes.flat)[len(panels) :]:
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
    ax.set_title(title)
    ax.tick_params(labelsize=8)


def etf_3d(snapshots: dict, epochs=None, *, ncols: int = 2):
    """Small multiples: class means (solid), classifier rows (dashed) and ETF vertices (grey
    triangles) of a K = 4 run at the chosen epochs (default: 4 spread over training), ``ncols``
    (at most 3) per row, the page width wide."""
    import matplotlib.pyplot as plt

    if not isinstance(ncols, int) or not 1 <= ncols <= 3:
        raise ValueError(f"ncols must be 1, 2 or 3 (readable at the page width), got {ncols!r}")
    keys = sorted(snapshots)
    if epochs is None:
        idx = np.unique(np.linspace(0, len(keys) - 1, min(4, len(keys))).round().astype(int))
        epochs = [keys[i] for i in idx]
    missing = [e for e in epochs if e not in snapshots]
    if missing:
        raise ValueError(f"no snapshot for epochs {missing}; available: {keys}")
    nrows = math.ceil(len(epochs) / ncols)
    cols = min(ncols, len(epochs))
    side = min(PAGE_WIDTH_IN / cols, 3.6)
    fig = plt.figure(figsize=(side * cols, side * nrows))
    for i, e in enumerate(epochs):
        ax = fig.add_subplot(nrows, cols, i + 1, projection="3d")
        _draw_frame(ax, *etf_frame(snapshots[e]), f"epoch {e}")
    fig.tight_layout()
    return fig


def collapse_animation(snapshots: dict, *, interval: int = 400):
    """The K = 4 collapse as an animation over the logged epochs; returns an ``IPython.display.HTML``
    (matplotlib ``FuncAnimation`` rendered with ``to_jshtml``) that plays in the book and on Colab."""
    import matplotlib.pyplot as plt
    from IPython.display import HTML
    from matplotlib.animation import FuncAnimation

    keys = sorted(snapshots)
    frames = [etf_frame(snapshots[e]) for e in keys]
    fig = plt.figure(figsize=(4.5, 4.5))
    ax = fig.add_subplot(111, projection="3d")

    def update(i):
        _draw_frame(ax, *frames[i], f"epoch {keys[i]}")
        return []

    anim = FuncAnimation(fig, update, frames=len(frames), interval=interval)
    html = offline_jshtml(anim.to_jshtml(default_mode="once"))
    plt.close(fig)
    return HTML(html)


# matplotlib's player buttons are Font Awesome icons from a CDN; offline (a classroom without
# internet) they would be blank, so the icons become plain text symbols and the link goes
_FA_SYMBOLS = {
    "fast-backward": "⏮",
    "step-backward": "◀︎|",
    "play": "▶",
    "pause": "⏸",
    "step-forward": "|▶︎",
    "fast-forward": "⏭",
    "minus": "−",
    "plus": "+",
}


def offline_jshtml(html: str) -> str:
    """``to_jshtml`` output that needs nothing from another host: the Font Awesome stylesheet link is
    removed and each ``<i class="fa fa-NAME"></i>`` icon is replaced by a text symbol."""
    import re

    html = re.sub(r'<link rel="stylesheet"\s*href="https?://[^"]*font-awesome[^"]*"\s*/?>', "", html)
    html = html.replace('<i class="fa fa-play fa-flip-horizontal"></i>', "◀")  # play backwards
    for name, sym in _FA_SYMBOLS.items():
        html = html.replace(f'<i class="fa fa-{name}"></i>', sym)
    return html


# ----------------------------------------------------------------------------- transfer (chapter 5)
__all__ += ["transfer_panels", "plain_log_ticks"]


def plain_log_ticks(ax, axis: str = "x", ticks=None):
    """Readable ticks on a log axis: plain numbers at ``ticks`` (default 1, 2, 5 × powers of 10)
    and no minor labels — instead of matplotlib's mixed ``3×10¹`` minor labels."""
    from matplotlib.ticker import LogLocator, NullFormatter, NullLocator, ScalarFormatter

    if axis not in ("x", "y"):
        raise ValueError(f"axis must be 'x' or 'y', got {axis!r}")
    a = ax.xaxis if axis == "x" else ax.yaxis
    if ticks is not None:
        (ax.set_xticks if axis == "x" else ax.set_yticks)(list(ticks), [f"{v:g}" for v in ticks])
    else:
        a.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        fmt = ScalarFormatter()
        fmt.set_scientific(False)
        a.set_major_formatter(fmt)
    a.set_minor_locator(NullLocator())
    a.set_minor_formatter(NullFormatter())
    return ax


def transfer_panels(
    table: pd.DataFrame,
    *,
    x: str = "l",
    cdnv: dict | None = None,
    accuracy: dict | None = None,
    baselines: dict | None = None,
    title: str | None = None,
):
    """Collapse and few-shot transfer against the number of source classes (Galanti, György &
    Hutter 2022, Fig. 3; the survey's Fig. 6): left, CDNV columns on a log scale; right,
    accuracy columns with their confidence half-widths (column ``<name>_ci``) as error bars.

    ``cdnv`` / ``accuracy`` map column names of ``table`` to legend labels (defaults:
    ``cdnv``/``test_cdnv``/``target_cdnv`` and ``fs1``/``fs5``); ``baselines`` maps a label to
    a horizontal reference value drawn on the accuracy panel (e.g. raw-input accuracy).
    Returns the matplotlib figure."""
    import matplotlib.pyplot as plt

    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"table must be a pandas DataFrame, got {type(table).__name__}")
    cdnv = (
        cdnv
        if cdnv is not None
        else {"cdnv": "source, train", "test_cdnv": "source, test", "target_cdnv": "target (unseen classes)"}
    )
    accuracy = accuracy if accuracy is not None else {"fs1": "1-shot", "fs5": "5-shot"}
    missing = [c for c in [x, *cdnv, *accuracy] if c not in table]
    if missing:
        raise ValueError(f"table lacks columns {missing}; it has {list(table.columns)}")
    t = table.sort_values(x)
    xs = t[x].to_numpy(dtype=float)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(PAGE_WIDTH_IN, 3.4))
    for col, lab in cdnv.items():
        a1.plot(xs, t[col].to_numpy(dtype=float), marker="o", label=lab)
    a1.set(xscale="log", yscale="log", xlabel=f"source classes {x}", ylabel="CDNV", title="Collapse of frozen features")
    plain_log_ticks(a1, "x", xs)
    a1.legend()
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (col, lab) in enumerate(accuracy.items()):
        ci = t[f"{col}_ci"].to_numpy(dtype=float) if f"{col}_ci" in t else None
        a2.errorbar(
            xs, t[col].to_numpy(dtype=float), yerr=ci, marker="o", capsize=3, label=lab, color=colours[i % len(colours)]
        )
    for j, (lab, v) in enumerate((baselines or {}).items()):
        a2.axhline(float(v), ls=":", lw=1.2, color=colours[(len(accuracy) + j) % len(colours)], label=lab)
    a2.set(xscale="log", xlabel=f"source classes {x}", ylabel="accuracy", title="Few-shot accuracy, unseen classes")
    plain_log_ticks(a2, "x", xs)
    a2.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- test collapse and margins
__all__ += ["size_sweep_panels", "margin_panels"]


def size_sweep_panels(table: pd.DataFrame, *, x: str = "n_train", title: str | None = None):
    """Train versus test collapse against the training-set size (one row per size, the columns
    of :func:`nclib.generalization.train_test_collapse`): CDNV on both splits (log–log; "test, train
    means": test features around the training class means), the gap test − train, and test
    accuracy with NC4 on test data (the fraction of test inputs the network classifies as the
    nearest training mean does). Returns the figure."""
    import matplotlib.pyplot as plt

    need = {x, "train_cdnv", "test_cdnv", "test_accuracy"}
    if not isinstance(table, pd.DataFrame) or not need <= set(table.columns):
        raise ValueError(f"table must be a DataFrame with columns {sorted(need)}")
    t = table.sort_values(x)
    n = t[x].to_numpy(dtype=float)
    fig, axes = plt.subplots(1, 3, figsize=(PAGE_WIDTH_IN, 3.2))
    ax = axes[0]
    ax.plot(n, t["train_cdnv"], "o-", label="train")
    ax.plot(n, t["test_cdnv"], "s-", label="test")
    if "test_cdnv_train_means" in t:
        ax.plot(n, t["test_cdnv_train_means"], "^--", label="test, train means")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="training-set size N",
        ylabel="CDNV (mean over pairs)",
        title="Train vs test collapse",
    )
    ax.legend()
    ax = axes[1]
    ax.plot(n, t["test_cdnv"] - t["train_cdnv"], "o-", color="C3")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="training-set size N",
        ylabel="test CDNV − train CDNV",
        title="Gap of collapse",
    )
    ax = axes[2]
    ax.plot(n, t["test_accuracy"], "o-", label="accuracy")
    if "ncc_agreement_test" in t:
        ax.plot(n, t["ncc_agreement_test"], "s--", label="= nearest train mean")
    ax.set(
        xscale="log",
        ylim=(0, 1.02),
        xlabel="training-set size N",
        ylabel="fraction of test inputs",
        title="Accuracy, NC4 (test)",
    )
    ax.legend()
    for a in axes:
        a.set_xticks(n, [f"{int(v):,}" for v in n], rotation=45)
        a.minorticks_off()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def margin_panels(
    trajectory: dict, *, reference: float | None = None, tpt_epoch: int | None = None, title: str | None = None
):
    """Left: the sorted normalised margins of every sample at each kept epoch, coloured by epoch
    (Banburski et al. 2021, Fig. 1 style); right: their minimum, 5 % quantile and median against
    the epoch. ``reference`` draws the ETF margin, ``tpt_epoch`` the start of the terminal phase.
    ``trajectory`` is ``{epoch: margins}`` (:func:`nclib.generalization.margin_trajectory`)."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    if not isinstance(trajectory, dict) or not trajectory:
        raise ValueError("trajectory must be a non-empty dict {epoch: margins}")
    epochs = sorted(trajectory)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(PAGE_WIDTH_IN, 3.4))
    norm = LogNorm(vmin=max(min(epochs), 1), vmax=max(max(epochs), 2))
    cmap = plt.get_cmap("viridis")
    for e in epochs:
        q = np.sort(torch.as_tensor(trajectory[e], dtype=torch.float64).numpy())
        a1.plot(np.linspace(0, 1, len(q)), q, color=cmap(norm(max(e, 1))), lw=1.2)
    sm = plt.cm.ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(sm, ax=a1, label="epoch")
    stats = {k: [] for k in ("min", "q05", "median")}
    for e in epochs:
        q = torch.as_tensor(trajectory[e], dtype=torch.float64)
        stats["min"].append(float(q.min()))
        stats["q05"].append(float(torch.quantile(q, 0.05)))
        stats["median"].append(float(q.median()))
    for k, st in (("median", "-"), ("q05", "--"), ("min", "-")):
        a2.plot(epochs, stats[k], marker="o", ms=3, ls=st, label=k)
    for a in (a1, a2):
        a.axhline(0, color="black", lw=0.8)
        if reference is not None:
            a.axhline(reference, color="grey", ls="--", lw=1, label="ETF value")
    if tpt_epoch is not None:
        a2.axvline(tpt_epoch, color="grey", ls=":", lw=1, label="terminal phase")
    a1.set(xlabel="fraction of samples (sorted)", ylabel="normalised margin", title="Sorted margins")
    a2.set_xscale("symlog", linthresh=1)
    a2.set_xlim(0, max(epochs) * 1.15)
    a2.set(xlabel="epoch", ylabel="normalised margin", title="Margins over training")
    a1.legend(loc="upper left")
    a2.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


__all__ += ["minority_collapse_panels"]


def minority_collapse_panels(
    sweep: pd.DataFrame, *, ufm: pd.DataFrame | None = None, num_classes: int | None = None, title: str | None = None
):
    """Minority collapse against the imbalance ratio R (chapter 6), three panels on a log-R axis:
    the mean cosine between minority **classifier rows**, the same between minority **class
    means** (features), and the per-group test accuracy (minority solid, majority dashed).

    ``sweep`` has one row per run with columns ``R``, ``head`` (the curve label),
    ``cos_W_minority``, ``cos_means_minority``, ``acc_minority``, ``acc_majority`` (as returned by
    :func:`nclib.imbalance.long_tail_summary`). ``ufm`` (columns ``R``, ``lam``, ``cos``) adds the
    unconstrained-features prediction to the first panel; ``num_classes`` draws the simplex-ETF
    cosine −1/(K−1). Returns the figure."""
    import matplotlib.pyplot as plt

    need = {"R", "head", "cos_W_minority", "cos_means_minority", "acc_minority", "acc_majority"}
    if not isinstance(sweep, pd.DataFrame) or not need <= set(sweep.columns):
        raise ValueError(f"sweep must be a DataFrame with columns {sorted(need)}")
    fig, axes = plt.subplots(1, 3, figsize=(PAGE_WIDTH_IN, 3.4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (head, g) in enumerate(sweep.sort_values("R").groupby("head", sort=False)):
        c = colors[i % len(colors)]
        axes[0].plot(g.R, g.cos_W_minority, "o-", color=c, label=head)
        axes[1].plot(g.R, g.cos_means_minority, "o-", color=c, label=head)
        axes[2].plot(g.R, g.acc_minority, "o-", color=c, label=f"{head}: minority")
        axes[2].plot(g.R, g.acc_majority, "s--", color=c, alpha=0.7, label=f"{head}: majority")
    if ufm is not None:
        for j, (lam, g) in enumerate(ufm.sort_values("R").groupby("lam")):
            axes[0].plot(g.R, g.cos, ":", color="0.25" if j == 0 else "0.55", lw=1.6, label=f"UFM, λ = {lam:g}")
    for ax in axes[:2]:
        if num_classes is not None:
            ax.axhline(-1 / (num_classes - 1), color="0.6", lw=0.8, ls="--")
        ax.set_ylabel("mean pairwise cosine")
    axes[0].set_title("Minority classifier rows")
    axes[1].set_title("Minority class means")
    axes[2].set_title("Test accuracy")
    axes[2].set_ylabel("accuracy")
    axes[2].set_ylim(-0.02, 1.02)
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("imbalance ratio R")
        ax.legend(fontsize=7.5)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


__all__ += ["seed_bands", "replay_panels"]


def seed_bands(
    runs: dict,
    key: str = "nc1",
    *,
    ax=None,
    logy: bool = True,
    thresholds=(),
    ylabel: str | None = None,
    title: str | None = None,
):
    """One history column against the epoch for several configurations and seeds: per label the
    mean over seeds (geometric mean when ``logy``) as a line and the min–max range over seeds as
    a band. ``runs`` = ``{label: [history DataFrame per seed, ...]}`` (histories logged at the same
    epochs); ``thresholds`` draws dotted horizontal lines. Returns the matplotlib figure."""
    import matplotlib.pyplot as plt

    if not isinstance(runs, dict) or not runs:
        raise TypeError("runs must be a non-empty dict {label: [history, ...]}")
    for label, hs in runs.items():
        if not isinstance(hs, (list, tuple)) or not hs or not all(isinstance(h, pd.DataFrame) for h in hs):
            raise TypeError(f"runs[{label!r}] must be a non-empty list of history DataFrames")
        if any(key not in h.columns or "epoch" not in h.columns for h in hs):
            raise ValueError(f"every history needs the columns 'epoch' and {key!r}")
    if ax is None:
        fig, ax = plt.subplots(figsize=(0.75 * PAGE_WIDTH_IN, 3.6))
    else:
        fig = ax.figure
    for label, hs in runs.items():
        wide = pd.concat([h.set_index("epoch")[key].rename(i) for i, h in enumerate(hs)], axis=1).sort_index()
        wide = wide[wide.index > 0] if logy else wide
        centre = np.exp(np.log(wide).mean(axis=1)) if logy else wide.mean(axis=1)
        (line,) = ax.plot(wide.index, centre, lw=1.8, label=f"{label} ({len(hs)} seeds)")
        ax.fill_between(wide.index, wide.min(axis=1), wide.max(axis=1), color=line.get_color(), alpha=0.2, lw=0)
    for t in thresholds:
        ax.axhline(t, color="0.4", lw=0.8, ls=":")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel or key)
    ax.set_title(title or f"{key} over training (line: mean over seeds, band: min–max)")
    ax.legend()
    fig.tight_layout()
    return fig


def replay_panels(sweep: pd.DataFrame, *, baselines: dict | None = None, title: str | None = None):
    """Chapter 8's replay sweep in three panels against the replay-buffer fraction (symmetric-log
    axis, so the no-buffer point 0 is shown): (1) accuracy on the past tasks' test inputs of the
    network (``net_all``, shallow) and of a linear probe on its frozen features (``probe_all``,
    deep), with ``baselines`` (``{label: probe accuracy}``) as horizontal lines; (2) their ``gap``;
    (3) the ``inflation`` of the replayed classes' mean norm. ``sweep`` needs the column
    ``fraction`` and those it plots. Returns the figure."""
    import matplotlib.pyplot as plt

    need = {"fraction", "net_all", "probe_all", "gap", "inflation"}
    if not isinstance(sweep, pd.DataFrame) or not need <= set(sweep.columns):
        raise ValueError(f"sweep must be a DataFrame with columns {sorted(need)}")
    s = sweep.sort_values("fraction")
    nonzero = s.fraction[s.fraction > 0]
    lin = float(nonzero.min()) if len(nonzero) else 1e-3
    fig, axes = plt.subplots(1, 3, figsize=(PAGE_WIDTH_IN, 3.4))
    axes[0].plot(s.fraction, s.net_all, "o-", label="network")
    axes[0].plot(s.fraction, s.probe_all, "s-", label="linear probe")
    for j, (label, v) in enumerate((baselines or {}).items()):
        axes[0].axhline(v, color=f"{0.2 + 0.2 * j:.1f}", lw=1, ls=["--", ":", "-."][j % 3], label=label)
    axes[0].set_ylabel("accuracy on past tasks")
    axes[0].set_ylim(-0.02, None)
    axes[0].set_title("Past tasks after the last task")
    axes[1].plot(s.fraction, s.gap, "o-", color="C3")
    axes[1].set_ylabel("probe − network accuracy")
    axes[1].set_title("Shallow-forgetting gap")
    sel = s.inflation.notna()
    axes[2].plot(s.fraction[sel], s.inflation[sel], "o-", color="C4")
    axes[2].axhline(1.0, color="0.5", lw=0.8, ls="--")
    axes[2].set_ylabel("‖buffer mean‖ / ‖class mean‖")
    axes[2].set_title("Inflated means of replayed classes")
    for ax in axes:
        ax.set_xscale("symlog", linthresh=lin)
        ax.set_xlim(-0.5 * lin, 1.3 * float(s.fraction.max()) if s.fraction.max() > 0 else lin)
        ax.set_xlabel("replay buffer (fraction)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7.5)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
