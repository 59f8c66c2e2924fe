"""Source of notebooks/01_what_is_neural_collapse.ipynb (run: python scripts/chapters/ch01.py)."""
import sys
from pathlib import Path

import nbformat as nbf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from new_chapter import PARAMETERS  # noqa: E402
from sync_notebooks import colab_cells  # noqa: E402
from chapters._otter import assignment_config, question  # noqa: E402
from chapters._write import write_chapter  # noqa: E402

NAME = "01_what_is_neural_collapse.ipynb"
md, code = nbf.v4.new_markdown_cell, nbf.v4.new_code_cell
badge, install = colab_cells(NAME)

EX_NC1 = question(
    "ex1.1-nc1", 2,
    r"""### Exercise 1.1 — NC1 from the definitions

Write `nc1_from_definitions(H, y, K)` that computes $\frac1K\operatorname{Tr}(\Sigma_W\Sigma_B^{+})$ for features
`H` (N×D, float64) and integer labels `y`, straight from the definitions of section 1.1: class means,
the sample-weighted global mean, $\Sigma_W$ averaged over all N samples, $\Sigma_B$ averaged over the K
classes, and `torch.linalg.pinv` for the pseudo-inverse (use `hermitian=True`). The tests compare
your value with `nclib.metrics.nc1`, which takes a different (streaming, K×K) route to the same number.""",
    """def nc1_from_definitions(H, y, K):
    # BEGIN SOLUTION
    mus = torch.stack([H[y == k].mean(0) for k in range(K)])
    mu_g = H.mean(0)
    dev = H - mus[y]
    sigma_w = dev.T @ dev / len(H)
    centred = mus - mu_g
    sigma_b = centred.T @ centred / K
    return float(torch.trace(sigma_w @ torch.linalg.pinv(sigma_b, hermitian=True)) / K)
    # END SOLUTION""",
    visible=["""_g = torch.Generator().manual_seed(1)
_y = torch.arange(4).repeat_interleave(50)
_H = torch.randn(4, 16, generator=_g, dtype=torch.float64)[_y] + 0.3 * torch.randn(200, 16, generator=_g, dtype=torch.float64)
_ref = metrics.nc1(metrics.FeatureStats(4, 16).update(_H, _y))
assert abs(nc1_from_definitions(_H, _y, 4) - _ref) < 1e-8 * _ref"""],
    hidden=["""_g = torch.Generator().manual_seed(2)
_y = torch.cat([torch.full((n,), k) for k, n in enumerate([5, 40, 13, 70, 22])])
_H = 3 * torch.randn(5, 30, generator=_g, dtype=torch.float64)[_y] + torch.randn(len(_y), 30, generator=_g, dtype=torch.float64)
_ref = metrics.nc1(metrics.FeatureStats(5, 30).update(_H, _y))
assert abs(nc1_from_definitions(_H, _y, 5) - _ref) < 1e-8 * _ref""",
            """_E = geometry.simplex_etf(6, 10, seed=3)
_y = torch.arange(6).repeat_interleave(20)
_H = _E[_y] + 1e-4 * torch.randn(120, 10, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
assert nc1_from_definitions(_H, _y, 6) < 1e-6"""],
)

EX_ETF = question(
    "ex1.2-etf", 2,
    r"""### Exercise 1.2 — build a simplex ETF

Write `my_simplex_etf(K)` returning a K×K float64 tensor whose rows form a simplex ETF with unit
norms — no random rotation needed. The tests check the norms, the pairwise cosines $-1/(K-1)$, that
the rows sum to zero, and `nclib.metrics.gram_etf_error` (0 exactly for an ETF).""",
    """def my_simplex_etf(K):
    # BEGIN SOLUTION
    return (K / (K - 1)) ** 0.5 * (torch.eye(K, dtype=torch.float64) - 1.0 / K)
    # END SOLUTION""",
    visible=["""_E = my_simplex_etf(5)
assert _E.shape == (5, 5)
assert torch.allclose(_E.norm(dim=1), torch.ones(5, dtype=torch.float64))"""],
    hidden=["""for _K in (2, 3, 7, 10):
    _E = my_simplex_etf(_K)
    _G = _E @ _E.T
    assert torch.allclose(_G[~torch.eye(_K, dtype=torch.bool)], torch.full((_K * (_K - 1),), -1.0 / (_K - 1), dtype=torch.float64))
    assert torch.allclose(_E.sum(0), torch.zeros(_K, dtype=torch.float64), atol=1e-12)
    assert metrics.gram_etf_error(_E) < 1e-10"""],
)

cells = [
assignment_config("ch01"),
md(f"""# Chapter 1 — What neural collapse is

{badge}

A classifier reaches **zero training error** long before training usually stops. The epochs that
follow — Papyan, Han and Donoho call them the *terminal phase of training* (TPT) {{cite}}`papyan2020` —
look idle from the outside: the error stays at zero and only the loss creeps down. Inside the last
layer, however, the geometry keeps moving, and it moves towards a remarkably rigid configuration.
This chapter defines that configuration, builds it by hand, and then watches a network on MNIST-1D
fall into it."""),
code(install),
code(PARAMETERS, metadata={"tags": ["parameters"]}),
code("""import matplotlib.pyplot as plt
import torch

import nclib
from nclib import geometry, metrics, plots
from nclib.claims import claim
from nclib.train import fit, recipe

device = nclib.setup_notebook(PROFILE, SEED)"""),
md(r"""## 1.1 Notation

Take a trained network and cut it just before its last linear layer. Each input $x_i$ with label
$y_i\in\{1,\dots,K\}$ becomes a feature vector $h_i\in\mathbb R^D$ (we store features as rows), and
the network predicts $\arg\max_k (Wh_i+b)_k$ with a classifier $W\in\mathbb R^{K\times D}$ and bias $b$.
From the $N$ training features we form

* the class means $\mu_k$ and the global mean $\mu_G=\frac1N\sum_i h_i$;
* the centred means $\tilde\mu_k=\mu_k-\mu_G$, stacked as the rows of $\tilde M\in\mathbb R^{K\times D}$;
* the within-class covariance $\Sigma_W=\frac1N\sum_i (h_i-\mu_{y_i})(h_i-\mu_{y_i})^\top$;
* the between-class covariance $\Sigma_B=\frac1K\sum_k \tilde\mu_k\tilde\mu_k^\top$.

With balanced classes the sample-weighted global mean equals the plain average of the class means;
`nclib` makes that choice (and every other convention) a keyword, with Papyan's as the default."""),
md(r"""## 1.2 The four collapses

**NC1 — variability collapse.** Features of a class shrink onto their mean: $\Sigma_W\to 0$. Because the
overall scale of the features is arbitrary, Papyan et al. measure it relative to the spread of the
means, $\mathrm{NC1}=\frac1K\operatorname{Tr}(\Sigma_W\Sigma_B^{+})$ (a pseudo-inverse, since $\Sigma_B$
has rank at most $K-1$).

**NC2 — convergence to a simplex ETF.** The centred means get equal lengths and equal, maximally
negative pairwise angles:
$\lVert\tilde\mu_k\rVert=\lVert\tilde\mu_{k'}\rVert$ and $\cos(\tilde\mu_k,\tilde\mu_{k'})=-\frac1{K-1}$ for
$k\ne k'$. We track the coefficient of variation of the norms (*equinorm*), the standard deviation
of the pairwise cosines (*equiangularity*) and their mean distance to $-1/(K-1)$ (*max-angle*).

**NC3 — self-duality.** The classifier rows point along the centred means, up to one common scale:
$\big\lVert W/\lVert W\rVert_F-\tilde M/\lVert\tilde M\rVert_F\big\rVert_F^2\to0$.

**NC4 — nearest class centre.** Given NC1–NC3 the linear classifier has nothing left to do but pick
the closest class mean; we count the fraction of training inputs on which
$\arg\max_k(Wh+b)_k$ and $\arg\min_k\lVert h-\mu_k\rVert$ disagree.

Why is the simplex ETF the destination? Among $K$ unit vectors summing to zero, it is the unique
(up to rotation) arrangement in which every pair is as far apart as any pair can be, so no class
is closer to a confusable neighbour than any other: the most symmetric, largest-margin layout."""),
*EX_NC1,
md("""## 1.3 Building a simplex ETF

Rows of $\\sqrt{K/(K-1)}\\,(I_K-\\frac1K\\mathbf 1\\mathbf 1^\\top)$ form a simplex ETF in the $(K-1)$-dimensional
subspace orthogonal to $\\mathbf 1$; any rotation of it into $\\mathbb R^D$ ($D\\ge K-1$) is one too.
`nclib.geometry.simplex_etf` builds it with a seeded random rotation. For $K=4$ it is a regular
tetrahedron:"""),
code("""E = geometry.simplex_etf(4, 3, seed=SEED)
print("row norms:", E.norm(dim=1).numpy().round(6))
print("Gram matrix (cosines):\\n", (E @ E.T).numpy().round(6))

fig = plt.figure(figsize=(4, 4))
ax = fig.add_subplot(projection="3d")
for k in range(4):
    ax.plot(*zip([0, 0, 0], E[k].numpy()), lw=2, label=f"class {k}")
    ax.scatter(*E[k].numpy(), s=30)
ax.set_xlabel("x"); ax.set_ylabel("y"); ax.set_zlabel("z"); ax.set_title("A simplex ETF with K = 4")
ax.legend(fontsize=7)
plt.show()"""),
*EX_ETF,
md("""The metrics on two synthetic cases — class means on an exact ETF with a little within-class noise
(and the classifier equal to the means), versus features drawn at random — show what "collapsed"
and "not collapsed" look like in numbers:"""),
code("""K, D, n = 10, 64, 200
g = torch.Generator().manual_seed(SEED)
labels = torch.arange(K).repeat_interleave(n)
etf = geometry.simplex_etf(K, D, seed=SEED) * 5
near = etf[labels] + 0.05 * torch.randn(K * n, D, generator=g, dtype=torch.float64)
rand = torch.randn(K * n, D, generator=g, dtype=torch.float64)
keys = ["nc1", "equinorm_means", "equiangularity", "max_angle", "self_duality", "ncc_mismatch"]
collapsed = metrics.measure_features(near, labels, W=etf).metrics
uncollapsed = metrics.measure_features(rand, labels, W=torch.randn(K, D, generator=g, dtype=torch.float64)).metrics
import pandas as pd
pd.DataFrame({"near-ETF features": {k: collapsed[k] for k in keys},
              "random features": {k: uncollapsed[k] for k in keys}}).style.format("{:.3g}")"""),
md(r"""## 1.4 The terminal phase on MNIST-1D

MNIST-1D {cite}`greydanus2020` turns ten hand-drawn digit templates into length-40 signals under
random shifts, shears and noise. It is generated on the fly, has no download, and is hard enough
that a linear model fails on it, which makes it a good stand-in for image data on a CPU.

**Recipe (quick profile).** 2,000 training and 1,000 test samples; an MLP with three hidden layers of
width 512, each followed by BatchNorm and ReLU; SGD with momentum 0.9, batch 128, learning rate 0.05
divided by 10 at epochs 100 and 200, weight decay $5\cdot10^{-3}$, 300 epochs. Without BatchNorm, or
with Papyan's weight decay of $5\cdot10^{-4}$, this network memorises the training set but stays far
from collapse within a CPU budget (NC1 ≈ 1 after 300 epochs in our calibration); the larger weight
decay is what drives the features towards the ETF quickly. The full profile runs Papyan et al.'s
original recipe: ResNet-18 on CIFAR-10, weight decay $5\cdot10^{-4}$, 350 epochs, learning rate divided by
10 at epochs 117 and 233.

Metrics are measured on the whole training set at 30 log-spaced epochs, as Papyan et al. did. A
trained run is cached, so re-executing the chapter is instant."""),
code("""cfg = recipe("papyan", PROFILE, seed=SEED)
run = fit(cfg)
print(f"trained in {run.seconds:.0f} s (from cache: {run.from_cache}); terminal phase starts at epoch {run.tpt_start}")
run.history[["epoch", "train_error", "test_error", "nc1", "equinorm_means", "equiangularity",
             "self_duality", "ncc_mismatch"]].iloc[::3].style.format(precision=4).hide(axis="index")"""),
code("""fig = plots.collapse_panels(run.history, tpt_epoch=run.tpt_start,
                            title="Neural collapse on MNIST-1D (dotted line: start of the terminal phase)")
plt.show()"""),
md("""Read the panels from left to right. The training error reaches zero (the dotted line marks the
epoch from which on no training mini-batch is misclassified again: the start of the terminal phase). From then on NC1 keeps falling on a log
scale; the norms of the class means and of the classifier rows equalise; the pairwise angles
approach $-1/(K-1)$; the classifier turns towards the class means; and the network's decisions
become those of the nearest class centre. The test error does not follow the training metrics all
the way down — how far collapse carries over to unseen data is the subject of chapter 2.

One difference from Papyan et al.'s figures is worth noticing. On their image data sets the network
fits the training set early and NC1 then falls by orders of magnitude *within* the terminal phase.
Here, the learning-rate drop at epoch 100 does two things at once: it removes the last training
errors and it triggers most of the collapse. By the time the terminal phase begins, NC1 is already
small, and during the terminal phase itself it falls only a few-fold. The checks below state both
facts."""),
md("""## 1.5 Seeing it: collapse with four classes

With $K=4$ the centred means live in a 3-dimensional subspace, so the whole geometry can be drawn.
We train the same recipe on the digits 0–3 of MNIST-1D, take the class means and classifier rows at
every logged epoch, and draw them in the frame of their nearest simplex ETF (grey triangles):
solid lines are class means, dashed lines the matching classifier rows."""),
code("""cfg4 = cfg.replace(data_kwargs={**cfg.data_kwargs, "classes": [0, 1, 2, 3]})
run4 = fit(cfg4)
fig = plots.etf_3d(run4.snapshots)
plt.show()"""),
code("""plots.collapse_animation(run4.snapshots)"""),
md("""## Reproduction checks

Each check states a claim of Papyan et al. (2020) and evaluates it on the run above. The terminal
phase is measured from the first logged epoch at or after the onset of zero training error."""),
code("""h = run.history
tpt = run.tpt_start
assert tpt is not None, "training error never reached zero"
at_tpt = h[h.epoch >= tpt].iloc[0]
end = h.iloc[-1]
print(f"TPT from epoch {tpt} (first measured at epoch {int(at_tpt.epoch)}) to epoch {int(end.epoch)}")

claim("ch1.zero-error", "training error reaches zero and stays there to the end",
      value=float(h[h.epoch >= tpt].train_error.max()), rule="== 0", source="papyan2020", chapter=1)
claim("ch1.nc1-overall", "NC1 falls by at least 100x from initialisation to the end of training",
      value=h.nc1.iloc[0] / end.nc1, rule=">= 100", source="papyan2020", chapter=1)
claim("ch1.nc1-tpt", "NC1 keeps falling during the terminal phase: at least 2x from its onset to the end",
      value=at_tpt.nc1 / end.nc1, rule=">= 2", source="papyan2020", chapter=1)
claim("ch1.nc1-tpt-10x", "NC1 falls by an order of magnitude or more during the terminal phase itself",
      value=at_tpt.nc1 / end.nc1, rule="< 10", source="papyan2020", chapter=1, reproduced=False,
      note="on MNIST-1D most of the collapse coincides with the learning-rate drop that also removes the last "
           "training errors, so the terminal phase starts with NC1 already ~0.02; it then falls a few-fold, not 10x")"""),
code("""claim("ch1.nc1-final", "within-class variability is small at the end: NC1 below 0.05",
      value=end.nc1, rule="< 0.05", source="papyan2020", chapter=1)
claim("ch1.equinorm", "class-mean norms equalise: their coefficient of variation ends below 0.1 and below its TPT-onset value",
      value=end.equinorm_means, rule=f"< {min(0.1, at_tpt.equinorm_means):.4g}", source="papyan2020", chapter=1)
claim("ch1.equiangularity", "pairwise angles equalise: std of cosines halves from initialisation and ends below 0.15",
      value=end.equiangularity, rule=f"< {min(0.15, h.equiangularity.iloc[0] / 2):.4g}", source="papyan2020", chapter=1)
claim("ch1.self-duality", "classifier aligns with the class means: self-duality ends below 0.05 and below its TPT-onset value",
      value=end.self_duality, rule=f"< {min(0.05, at_tpt.self_duality):.4g}", source="papyan2020", chapter=1)
claim("ch1.ncc", "the network classifies like the nearest class centre on ≤ 1 % of training inputs differently",
      value=end.ncc_mismatch, rule="<= 0.01", source="papyan2020", chapter=1)
claim("ch1.k4-etf", "with K = 4 the class means end close to their nearest simplex ETF (distance < 0.1)",
      value=geometry.distance_to_nearest_etf(run4.snapshots[max(run4.snapshots)]["means"]), rule="< 0.1",
      source="papyan2020", chapter=1)"""),
md("""All checks compare quantities measured in this run with thresholds stated before it was run; they
must hold for any `SEED`. The {doc}`claims ledger <../book/claims_ledger>` lists their measured values."""),
]

write_chapter(NAME, cells)
