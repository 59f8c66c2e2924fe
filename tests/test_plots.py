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

    cfg = TrainConfig(data="gaussian", data_kwargs=dict(num_classes=4, dim=8, n_per_class=20, n_test_per_class=5),
                      model="mlp", model_kwargs=dict(width=8, depth=1), epochs=3, batch_size=40, n_logs=3)
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
    snap = {"means": torch.randn(4, 10, generator=g, dtype=torch.float64),
            "W": torch.randn(4, 10, generator=g, dtype=torch.float64), "b": torch.zeros(4)}
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
        out[e] = {"means": (1 - t) * start + t * end["means"], "W": (1 - t) * start.flip(0) + t * end["W"],
                  "b": torch.zeros(4, dtype=torch.float64)}
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
