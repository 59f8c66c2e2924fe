"""nclib.plots: every panel labelled; the K = 4 ETF frame is exact on an exact ETF; the
animation renders to HTML/JS."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib import pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from nclib import plots  # noqa: E402
from nclib.geometry import etf_coordinates, random_orthonormal, simplex_etf  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def fake_history(seed=0, epochs=(0, 1, 2, 5, 10, 20)):
    rng = np.random.default_rng(seed)
    n = len(epochs)
    h = {"epoch": list(epochs)}
    for col in {c for cols, *_ in plots.PANELS for c in cols}:
        h[col] = np.sort(rng.uniform(1e-3, 1.0, n))[::-1]
    return pd.DataFrame(h)


def visible_axes(fig):
    return [ax for ax in fig.axes if ax.get_visible()]


def assert_labelled(fig):
    axes = visible_axes(fig)
    assert axes
    for ax in axes:
        assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title(), ax


# ----------------------------------------------------------------------------- collapse_panels
def test_collapse_panels_one_history():
    h = fake_history()
    fig = plots.collapse_panels(h)
    assert isinstance(fig, Figure)
    axes = visible_axes(fig)
    assert len(axes) == len(plots.PANELS)
    assert_labelled(fig)
    assert [ax.get_title() for ax in axes] == [p[1] for p in plots.PANELS]
    # each panel plots its columns against the epochs
    err = axes[0]
    assert len(err.get_lines()) == 2
    assert np.array_equal(err.get_lines()[0].get_xdata(), h["epoch"].to_numpy(dtype=float))
    assert np.array_equal(err.get_lines()[0].get_ydata(), h["train_error"].to_numpy(dtype=float))
    assert axes[1].get_yscale() == "log" and axes[0].get_yscale() == "linear"
    assert all(ax.get_xscale() == "symlog" for ax in axes)


def test_collapse_panels_dict_of_histories_with_legend_and_tpt():
    runs = {"seed 0": fake_history(0), "seed 1": fake_history(1)}
    fig = plots.collapse_panels(runs, tpt_epoch=5, ncols=3, title="two runs")
    assert len(fig.axes) == 9 and len(visible_axes(fig)) == len(plots.PANELS)
    assert_labelled(fig)
    assert fig._suptitle.get_text() == "two runs"
    nc1 = visible_axes(fig)[1]
    assert [t.get_text() for t in nc1.get_legend().get_texts()] == ["seed 0", "seed 1"]
    # the terminal-phase marker: a vertical line at epoch 5 in every panel
    for ax in visible_axes(fig):
        assert any(len(line.get_xdata()) == 2 and np.allclose(line.get_xdata(), [5, 5]) for line in ax.get_lines())


def test_collapse_panels_skips_missing_columns():
    h = fake_history().drop(columns=["test_cdnv", "test_error"])
    fig = plots.collapse_panels(h)
    assert_labelled(fig)
    assert len(visible_axes(fig)[0].get_lines()) == 1


def test_collapse_panels_custom_panels():
    fig = plots.collapse_panels(fake_history(), panels=[(("nc1",), "NC1", "nc1", True)], ncols=2)
    assert len(visible_axes(fig)) == 1
    assert_labelled(fig)


def test_collapse_panels_on_a_real_history():
    from nclib.train import TrainConfig, fit

    cfg = TrainConfig(
        data="gaussian",
        data_kwargs=dict(num_classes=4, dim=8, n_per_class=20, n_test_per_class=5),
        model="mlp",
        model_kwargs=dict(width=8, depth=1),
        epochs=3,
        batch_size=40,
        n_logs=3,
    )
    run = fit(cfg, cache=False, progress=False)
    fig = plots.collapse_panels(run.history, tpt_epoch=run.tpt_start)
    assert_labelled(fig)
    assert all(len(ax.get_lines()) >= 1 for ax in visible_axes(fig))
    # the K = 4 snapshots of the same run feed the 3-D view
    assert_labelled3d(plots.etf_3d(run.snapshots))


@pytest.mark.parametrize("bad", [[fake_history()], {"a": {"epoch": [0]}}, np.zeros((3, 3))])
def test_collapse_panels_rejects(bad):
    with pytest.raises(TypeError, match="DataFrame"):
        plots.collapse_panels(bad)


def test_set_theme():
    with matplotlib.rc_context():
        plots.set_theme()
        assert matplotlib.rcParams["axes.grid"]
        assert min(matplotlib.rcParams[k] for k in plots.FONTS) * plots.DPI / 72 >= plots.MIN_FONT_PX


# ----------------------------------------------------------------------------- the K = 4 frame
def etf_snapshot(D=16, seed=0, scale=2.5, shift=1.0, W_seed=None):
    """Class means that ARE a simplex ETF (rotated into D dimensions, scaled, shifted)."""
    E = simplex_etf(4, D, seed=seed)
    mu_g = shift * torch.ones(D, dtype=torch.float64)
    W = E if W_seed is None else simplex_etf(4, D, seed=W_seed)
    return {"means": scale * E + mu_g, "W": 0.7 * W, "b": torch.zeros(4, dtype=torch.float64)}


def test_etf_frame_of_an_exact_etf_sits_on_the_vertices():
    m3, w3, C = plots.etf_frame(etf_snapshot())
    assert np.array_equal(C, etf_coordinates(4).numpy())
    assert m3.shape == w3.shape == C.shape == (4, 3)
    assert np.abs(m3 - C).max() < 1e-8
    # a self-dual classifier (W ∝ centred means) lands on the same vertices
    assert np.abs(w3 - C).max() < 1e-8


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_etf_frame_is_rotation_invariant(seed):
    snap = etf_snapshot(D=16, seed=seed, scale=0.3, shift=-2.0)
    R = random_orthonormal(16, 16, seed=100 + seed)
    rotated = {"means": snap["means"] @ R.T, "W": snap["W"] @ R.T, "b": snap["b"]}
    for s in (snap, rotated):
        m3, w3, C = plots.etf_frame(s)
        assert np.abs(m3 - C).max() < 1e-8 and np.abs(w3 - C).max() < 1e-8


def test_etf_frame_of_general_means():
    g = torch.Generator().manual_seed(0)
    snap = {
        "means": torch.randn(4, 10, generator=g, dtype=torch.float64),
        "W": torch.randn(4, 10, generator=g, dtype=torch.float64),
        "b": torch.zeros(4),
    }
    m3, w3, C = plots.etf_frame(snap)
    assert np.isfinite(m3).all() and np.isfinite(w3).all()
    assert np.linalg.norm(m3, axis=1).mean() == pytest.approx(1.0)
    assert np.linalg.norm(w3, axis=1).mean() == pytest.approx(1.0)
    # the centred means of 4 classes live in 3 dimensions: the frame loses none of their geometry
    M = snap["means"] - snap["means"].mean(0)
    G = (M @ M.T).numpy() / np.linalg.norm(M.numpy(), axis=1).mean() ** 2
    assert np.allclose(m3 @ m3.T, G, atol=1e-10)


def test_etf_frame_global_mean_argument():
    snap = etf_snapshot(shift=0.0)
    m3, _, C = plots.etf_frame(snap, global_mean=torch.zeros(16, dtype=torch.float64))
    assert np.abs(m3 - C).max() < 1e-8


@pytest.mark.parametrize("K", [3, 5])
def test_three_d_views_need_k4(K):
    E = simplex_etf(K, 8, seed=0)
    snap = {"means": E, "W": E, "b": torch.zeros(K)}
    with pytest.raises(ValueError, match="K = 4"):
        plots.etf_frame(snap)
    with pytest.raises(ValueError, match="K = 4"):
        plots.etf_3d({0: snap})
    with pytest.raises(ValueError, match="K = 4"):
        plots.collapse_animation({0: snap})


def assert_labelled3d(fig):
    axes = visible_axes(fig)
    assert axes
    for ax in axes:
        assert ax.name == "3d"
        assert ax.get_xlabel() and ax.get_ylabel() and ax.get_zlabel() and ax.get_title()


def snapshots_collapsing(n=3):
    """Snapshots drifting from random means to an exact ETF."""
    g = torch.Generator().manual_seed(1)
    start = torch.randn(4, 16, generator=g, dtype=torch.float64)
    end = etf_snapshot()
    out = {}
    for i, e in enumerate((0, 3, 10, 30, 100)[:n]):
        t = i / (n - 1)
        out[e] = {
            "means": (1 - t) * start + t * end["means"],
            "W": (1 - t) * start.flip(0) + t * end["W"],
            "b": torch.zeros(4, dtype=torch.float64),
        }
    return out


def test_etf_3d_small_multiples():
    snaps = snapshots_collapsing(5)
    fig = plots.etf_3d(snaps)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 4  # default: 4 epochs spread over training
    assert_labelled3d(fig)
    assert [ax.get_title() for ax in fig.axes] == ["epoch 0", "epoch 3", "epoch 30", "epoch 100"]
    fig2 = plots.etf_3d(snaps, epochs=[3, 100])
    assert [ax.get_title() for ax in fig2.axes] == ["epoch 3", "epoch 100"]
    with pytest.raises(ValueError, match="no snapshot"):
        plots.etf_3d(snaps, epochs=[7])


def test_collapse_animation_renders_html():
    from IPython.display import HTML

    html = plots.collapse_animation(snapshots_collapsing(3), interval=100)
    assert isinstance(html, HTML)
    assert "<script" in html.data
    assert html.data.count("data:image/png;base64") == 3  # one frame per snapshot
    assert plt.get_fignums() == []  # the animation's figure is closed
    # plays offline: no stylesheet or icon font from another host, text symbols on the buttons
    assert "http://" not in html.data and "https://" not in html.data and "fa fa-" not in html.data
    assert "▶" in html.data and "⏸" in html.data


# ----------------------------------------------------------------------------- readable at the page width
# Assumption (nclib.plots): the book's text column is PAGE_WIDTH_PX = 688 CSS px wide at a 1280 px
# window (measured) and the inline backend draws at 100 dpi; a figure is shown at min(its width,
# 688 px). The browser test measures the real rendered width.
def _figures():
    """Every figure function of nclib.plots that the chapters call, on small synthetic inputs."""
    h = fake_history()
    sizes = pd.DataFrame(
        {
            "n_train": [100, 300, 1000, 3000],
            "train_cdnv": [0.1, 0.05, 0.02, 0.01],
            "test_cdnv": [0.5, 0.3, 0.2, 0.1],
            "test_cdnv_train_means": [0.6, 0.4, 0.3, 0.2],
            "test_accuracy": [0.6, 0.7, 0.8, 0.9],
            "ncc_agreement_test": [0.8, 0.85, 0.9, 0.95],
        }
    )
    transfer = pd.DataFrame(
        {
            "l": [2, 5, 10, 20],
            "cdnv": [0.3, 0.2, 0.1, 0.05],
            "test_cdnv": [0.4, 0.3, 0.2, 0.1],
            "target_cdnv": [0.9, 0.7, 0.5, 0.4],
            "fs1": [0.3, 0.4, 0.5, 0.6],
            "fs5": [0.5, 0.6, 0.7, 0.8],
            "fs1_ci": [0.02] * 4,
            "fs5_ci": [0.02] * 4,
        }
    )
    g = torch.Generator().manual_seed(0)
    traj = {e: torch.randn(200, generator=g, dtype=torch.float64) + e / 10 for e in (1, 10, 100)}
    sweep = pd.DataFrame(
        {
            "R": [1, 10, 100] * 2,
            "head": ["learnable"] * 3 + ["fixed ETF"] * 3,
            "cos_W_minority": [-0.1, 0.5, 0.9, -0.1, -0.1, -0.1],
            "cos_means_minority": [-0.1, 0.3, 0.8] * 2,
            "acc_minority": [0.9, 0.5, 0.1, 0.9, 0.6, 0.3],
            "acc_majority": [0.9] * 6,
        }
    )
    ufm = pd.DataFrame({"R": [1, 10, 100] * 2, "lam": [5e-3] * 3 + [1e-2] * 3, "cos": [-0.1, 0.6, 1.0, -0.1, 0.8, 1.0]})
    replay = pd.DataFrame(
        {
            "fraction": [0.0, 0.01, 0.1, 0.5],
            "net_all": [0.0, 0.3, 0.6, 0.8],
            "probe_all": [0.5, 0.6, 0.7, 0.85],
            "gap": [0.5, 0.3, 0.1, 0.05],
            "inflation": [np.nan, 3.0, 1.5, 1.1],
        }
    )
    bands = {"learnable": [fake_history(s) for s in range(3)], "fixed ETF": [fake_history(s + 3) for s in range(3)]}
    fig, ax = plots.subplots(1, 3)
    for a in ax:
        a.plot([1, 2], [3, 4], label="a curve")
        a.set(title="a title", xlabel="x", ylabel="y")
        a.legend()
    return {
        "collapse_panels": plots.collapse_panels(h, tpt_epoch=5, title="a title"),
        "collapse_panels (runs)": plots.collapse_panels({"seed 0": h, "seed 1": fake_history(1)}),
        "etf_3d": plots.etf_3d(snapshots_collapsing(5)),
        "size_sweep_panels": plots.size_sweep_panels(sizes, title="a title"),
        "transfer_panels": plots.transfer_panels(transfer, baselines={"raw input, 5-shot": 0.4}),
        "margin_panels": plots.margin_panels(traj, reference=0.5, tpt_epoch=10),
        "minority_collapse_panels": plots.minority_collapse_panels(sweep, ufm=ufm, num_classes=10),
        "seed_bands": plots.seed_bands(bands, "nc1", thresholds=(0.1,)),
        "replay_panels": plots.replay_panels(replay, baselines={"probe, joint": 0.9}),
        "subplots(1, 3)": fig,
    }


def test_every_figure_is_readable_at_the_page_width():
    """The smallest text of every figure is at least MIN_FONT_PX at the page width (under the book's
    theme), no figure is wider than the page, and none has more than three panels per row."""
    small = {}
    with matplotlib.rc_context():
        plots.set_theme()
        figures = _figures()
    for name, fig in figures.items():
        px = plots.min_font_px(fig)
        if px < plots.MIN_FONT_PX:
            small[name] = round(px, 2)
        assert fig.get_size_inches()[0] <= plots.PAGE_WIDTH_IN + 1e-9, name
        rows = {round(ax.get_position().y0, 3) for ax in visible_axes(fig) if ax.name != "3d"}
        per_row = [sum(1 for ax in visible_axes(fig) if round(ax.get_position().y0, 3) == r) for r in rows]
        assert max(per_row, default=0) <= 3, (name, per_row)
    assert not small, f"fonts below {plots.MIN_FONT_PX} px at {plots.PAGE_WIDTH_PX} px: {small}"


def test_min_font_px_scales_with_the_rendered_width():
    fig, ax = plt.subplots(figsize=(14.4, 3))
    ax.set_title("t", fontsize=10)
    ax.tick_params(labelsize=10)
    ax.set(xlabel="x", ylabel="y")
    wide = plots.min_font_px(fig)
    # a 14.4 in figure at 100 dpi is ~1200 px after the tight crop: shown at 688 px, 10 pt (13.9 px)
    # shrinks to ~8 px
    assert 6.0 < wide < 9.0
    assert plots.min_font_px(fig, width_px=10_000) == pytest.approx(10 * 100 / 72)
    plots.fit_to_page(fig)
    assert fig.get_size_inches()[0] == pytest.approx(plots.PAGE_WIDTH_IN)
    assert plots.min_font_px(fig) > 12
    with pytest.raises(ValueError, match="positive"):
        plots.min_font_px(fig, width_px=0)


def test_png_records_the_smallest_font():
    import io

    from PIL import Image

    fig, ax = plt.subplots(figsize=(12, 3))
    ax.plot([0, 1], [0, 1])
    ax.set(title="t", xlabel="x", ylabel="y")
    data = plots.png_bytes(fig)
    img = Image.open(io.BytesIO(data))
    # the smallest font at the PNG's own size (the browser test scales it to the rendered width)
    assert float(img.text[plots.PNG_FONT_KEY]) == pytest.approx(plots.min_font_px(fig, width_px=1e9), abs=0.01)
    assert img.width <= plots.PAGE_WIDTH_PX + 20  # narrowed to the page (tight bbox: a few px either way)


def test_subplots_refuses_more_than_three_panels_a_row():
    with pytest.raises(ValueError, match="at most 3"):
        plots.subplots(1, 4)
    with pytest.raises(ValueError, match="ncols"):
        plots.collapse_panels(fake_history(), ncols=4)
