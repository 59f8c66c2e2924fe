"""Source of notebooks/02_test_collapse.ipynb (run: python scripts/chapters/ch02.py)."""
import sys
from pathlib import Path

import nbformat as nbf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from new_chapter import PARAMETERS  # noqa: E402
from sync_notebooks import colab_cells  # noqa: E402
from chapters._otter import assignment_config, question  # noqa: E402
from chapters._write import write_chapter  # noqa: E402

NAME = "02_test_collapse.ipynb"
md, code = nbf.v4.new_markdown_cell, nbf.v4.new_code_cell
badge, install = colab_cells(NAME)

EX_CDNV = question(
    "ex2.1-cdnv", 2,
    r"""### Exercise 2.1 — the CDNV of two classes

Write `cdnv_two_classes(H1, H2)` that returns, as a Python float, the CDNV $V_f(S_1,S_2)$ of two classes
given their features: `H1` ($n_1\times D$) and `H2` ($n_2\times D$), float64, one row per sample. Use the
empirical distribution of each class, exactly as in the formula above: the class mean $\mu_k$, the
variance $\sigma_k^2=\frac1{n_k}\sum_i\lVert h_i-\mu_k\rVert^2$ (the average squared distance to the mean —
divide by $n_k$, not $n_k-1$), and

$$V=\frac{\sigma_1^2+\sigma_2^2}{2\,\lVert\mu_1-\mu_2\rVert^2}.$$

The visible test compares your value with `nclib.metrics.cdnv` of a two-class `FeatureStats`; the
hidden tests compare every pair of an imbalanced five-class set (one class has only two samples)
with the pairwise matrix `metrics.cdnv(stats, reduce="none")`, and check that the value does not
change when both classes are rescaled and shifted together.""",
    """def cdnv_two_classes(H1, H2):
    # BEGIN SOLUTION
    mu1, mu2 = H1.mean(0), H2.mean(0)
    var1 = (H1 - mu1).pow(2).sum(1).mean()
    var2 = (H2 - mu2).pow(2).sum(1).mean()
    return float((var1 + var2) / (2 * (mu1 - mu2).pow(2).sum()))
    # END SOLUTION""",
    visible=["""_g = torch.Generator().manual_seed(1)
_H1 = torch.randn(40, 8, generator=_g, dtype=torch.float64) + 1.5
_H2 = 0.5 * torch.randn(60, 8, generator=_g, dtype=torch.float64) - 0.5
_y = torch.cat([torch.zeros(40, dtype=torch.long), torch.ones(60, dtype=torch.long)])
_ref = metrics.cdnv(metrics.FeatureStats(2, 8).update(torch.cat([_H1, _H2]), _y))
assert abs(cdnv_two_classes(_H1, _H2) - _ref) < 1e-10 * _ref"""],
    hidden=["""_g = torch.Generator().manual_seed(2)
_y = torch.cat([torch.full((n,), k) for k, n in enumerate([2, 30, 7, 120, 15])])
_spread = torch.rand(5, 1, generator=_g, dtype=torch.float64) + 0.2
_H = 2 * torch.randn(5, 20, generator=_g, dtype=torch.float64)[_y] + _spread[_y] * torch.randn(len(_y), 20, generator=_g, dtype=torch.float64)
_V = metrics.cdnv(metrics.FeatureStats(5, 20).update(_H, _y), reduce="none")
for _i in range(5):
    for _j in range(5):
        if _i != _j:
            assert abs(cdnv_two_classes(_H[_y == _i], _H[_y == _j]) - _V[_i, _j]) < 1e-10 * _V[_i, _j], (_i, _j)""",
            """_g = torch.Generator().manual_seed(3)
_H1 = torch.randn(25, 6, generator=_g, dtype=torch.float64)
_H2 = torch.randn(9, 6, generator=_g, dtype=torch.float64) + 1.0
_c = 10 * torch.randn(6, generator=_g, dtype=torch.float64)
_v = cdnv_two_classes(_H1, _H2)
assert abs(cdnv_two_classes(0.01 * _H1 + _c, 0.01 * _H2 + _c) - _v) < 1e-9 * _v
assert abs(cdnv_two_classes(_H2, _H1) - _v) < 1e-12 * _v"""],
)

EX_NC4 = question(
    "ex2.2-nc4-unseen", 2,
    r"""### Exercise 2.2 — NC4 on unseen data

Write `ncc_agreement(H_train, y_train, H_test, W, b=None)`: the fraction (a Python float in $[0,1]$)
of the held-out features `H_test` on which the network's decision $\arg\max_k(Wh+b)_k$ equals the
nearest-**training**-mean decision $\arg\min_k\lVert h-\mu_k^{\text{train}}\rVert$, where
$\mu_k^{\text{train}}$ is the mean of the rows of `H_train` with label $k$ and $K$ is the number of
rows of `W` (K×D). When `b` is `None` the classifier has no bias. This is the
`ncc_agreement_test` column of the table above.

The visible test compares your value with `1 - nclib.metrics.ncc_mismatch(H_test, W, means, b)`
(the exact same count). The hidden tests use imbalanced training classes and no bias, and check
a fact worth knowing: the nearest-mean rule *is* a linear classifier — with $w_k=\mu_k$ and
$b_k=-\tfrac12\lVert\mu_k\rVert^2$ the two decisions agree on every input.""",
    """def ncc_agreement(H_train, y_train, H_test, W, b=None):
    # BEGIN SOLUTION
    K = W.shape[0]
    means = torch.stack([H_train[y_train == k].mean(0) for k in range(K)])
    logits = H_test @ W.T
    if b is not None:
        logits = logits + b
    nearest = torch.cdist(H_test, means).argmin(1)
    return float((logits.argmax(1) == nearest).double().mean())
    # END SOLUTION""",
    visible=["""_g = torch.Generator().manual_seed(4)
_C = 2 * torch.randn(4, 10, generator=_g, dtype=torch.float64)
_ytr, _yte = torch.arange(4).repeat_interleave(30), torch.arange(4).repeat_interleave(50)
_Htr = _C[_ytr] + torch.randn(120, 10, generator=_g, dtype=torch.float64)
_Hte = _C[_yte] + 2 * torch.randn(200, 10, generator=_g, dtype=torch.float64)
_W = _C + torch.randn(4, 10, generator=_g, dtype=torch.float64)
_b = torch.randn(4, generator=_g, dtype=torch.float64)
_means = metrics.FeatureStats(4, 10).update(_Htr, _ytr).means
_ref = 1 - metrics.ncc_mismatch(_Hte, _W, _means, _b)
assert abs(ncc_agreement(_Htr, _ytr, _Hte, _W, _b) - _ref) < 1e-12"""],
    hidden=["""_g = torch.Generator().manual_seed(5)
_ytr = torch.cat([torch.full((n,), k) for k, n in enumerate([3, 50, 12, 80, 25, 9])])
_C = 3 * torch.randn(6, 16, generator=_g, dtype=torch.float64) + 4
_Htr = _C[_ytr] + torch.randn(len(_ytr), 16, generator=_g, dtype=torch.float64)
_Hte = _C[torch.arange(6).repeat(40)] + 3 * torch.randn(240, 16, generator=_g, dtype=torch.float64)
_W = _C + 2 * torch.randn(6, 16, generator=_g, dtype=torch.float64)
_means = metrics.FeatureStats(6, 16).update(_Htr, _ytr).means
_ref = 1 - metrics.ncc_mismatch(_Hte, _W, _means)
assert abs(ncc_agreement(_Htr, _ytr, _Hte, _W) - _ref) < 1e-12
assert ncc_agreement(_Htr, _ytr, _Hte, _means, -0.5 * _means.pow(2).sum(1)) == 1.0"""],
)

cells = [
assignment_config("ch02"),
md(f"""# Chapter 2 — Does collapse generalise? Test collapse

{badge}

Chapter 1 watched the training features of a network fall onto a simplex ETF. Every one of those
measurements was taken on the data the network was fitted to. A classifier is judged on inputs
it has never seen, so the obvious next question is whether anything of the collapse survives on
them. The literature gives two answers that sound opposite. Galanti, György and Hutter prove that
small within-class variability on the training set, together with enough data, bounds the
variability on the underlying distribution {{cite}}`galanti2022`. Hui, Belkin and Nakkiran observe
that collapse on held-out data stalls while collapse on the training data keeps improving, and
even that better training collapse goes with worse test collapse {{cite}}`hui2022`. The survey this
book follows argues that both observations fit one picture once one asks the right asymptotic
question {{cite}}`survey2022`. This chapter makes that argument with numbers."""),
code(install),
code(PARAMETERS, metadata={"tags": ["parameters"]}),
code("""import matplotlib.pyplot as plt
import pandas as pd
import torch
from tqdm.auto import tqdm

import nclib
from nclib import generalization as gen
from nclib import metrics, plots
from nclib.claims import claim
from nclib.profiles import pick
from nclib.train import fit, resolve_profile

device = nclib.setup_notebook(PROFILE, SEED)
PROFILE = resolve_profile(PROFILE, "cifar10")  # full needs CIFAR-10; without it: quick, same claims"""),
md(r"""## 2.1 A collapse measure for two distributions

NC1 compares the within-class scatter with the between-class scatter of *all* classes at once.
For generalisation it is easier to work with one pair of classes at a time. Let $f$ be the
feature map (the network up to its last layer) and $Q_1, Q_2$ two distributions of inputs. The
**class-distance normalised variance** (CDNV) of Galanti et al. is

$$
V_f(Q_1,Q_2)=\frac{\operatorname{Var}_{Q_1}(f)+\operatorname{Var}_{Q_2}(f)}{2\,\lVert \mathbb E_{Q_1}f-\mathbb E_{Q_2}f\rVert^2},
\qquad \operatorname{Var}_{Q}(f)=\mathbb E_{Q}\lVert f-\mathbb E_Q f\rVert^2 .
$$

It is the average spread of the two feature clouds measured in units of the squared distance
between their centres. Two things make it convenient. It does not change when the features are
rescaled, so it can be compared across epochs and networks. And it controls confusions: by
Chebyshev's inequality a feature of class 1 can only end up closer to the centre of class 2 if it
strays from its own centre by half the distance between the centres, which happens with
probability at most about $4\operatorname{Var}_{Q_1}(f)/\lVert\mathbb E_{Q_1}f-\mathbb E_{Q_2}f\rVert^2$ —
a multiple of the CDNV.

Two versions matter here. With $P_k$ the distribution of inputs of class $k$, $V_f(P_i,P_j)$ is the
*population* CDNV — the one that decides how unseen data is classified. With $S_k$ the training
inputs of class $k$ and the uniform distribution on them, $V_f(S_i,S_j)$ is the *empirical* CDNV —
the one training can drive to zero. `nclib.metrics.cdnv` averages $V_f$ over all pairs of classes.

**Which estimate of the population CDNV we report.** We estimate $V_f(P_i,P_j)$ by the CDNV of
held-out features, each class around *its own* held-out mean: that is exactly the definition with
$P_k$ replaced by a large fresh sample from it. An alternative measures the held-out variance
around the *training* means, which is what a nearest-class-mean rule sees; it mixes the
concentration of the features with the error in the class means. We plot it too (as
`test_cdnv_train_means`), but the claims use the first, because it is the quantity in the bound."""),
*EX_CDNV,
md(r"""## 2.2 From training collapse to test collapse: the bound

Galanti et al. prove, for every pair of classes $i\ne j$,

$$
V_f(P_i,P_j)\;\le\;(1+A)\,V_f(S_i,S_j)+B .
$$

Read it as "test collapse is at most a slightly inflated training collapse plus a correction".
What sets $A$ and $B$:

* **How well the training sample represents each class, through the lens of $f$.** Both
  terms grow with the gap between the empirical and the population mean of $f$ on each class,
  and with the gap between the empirical and the population mean of $\lVert f\rVert^2$. These gaps
  shrink as the number $n_k$ of training samples per class grows, roughly like
  (complexity of the class of feature maps)$/\sqrt{n_k}$ — for ReLU networks with bounded
  weights the complexity is a norm-based capacity.
* **How far apart the class centres are.** $B$ carries the inverse distance between the
  *training* centres of $i$ and $j$; $A$ the inverse distance between the *population* centres
  (which in turn is close to the training one when the gaps above are small).

So the bound is small when three things hold together: collapse on the training set
(small $V_f(S_i,S_j)$), well separated centres (which an ETF provides), and enough data per class
for a well-behaved feature map. The first two are what neural collapse delivers; the third is
not. The bound also says what to expect in two limits. Training longer on a **fixed** set can
push $V_f(S_i,S_j)$ to zero but leaves $B$ where it is, so test collapse should stall at a
positive level — that is Hui et al.'s observation. Growing the **training set** shrinks $A$ and
$B$, so test collapse should approach training collapse — that is the survey's reply. Note what
the bound does not say: it assumes a "nice" feature map and does not explain why training finds
one."""),
md(r"""## 2.3 The experiment

MNIST-1D {cite}`greydanus2020` is procedural, so we can have as much data from one distribution as
we like. We draw 5,000 samples once, and for each training-set size
$N\in\{250, 500, 1000, 2000, 4000\}$ (a 16× range) train on the first $N$ and hold out the rest.

**"Trained to the same target".** Hui et al. trained every size until the training loss reached
$10^{-6}$; the survey points out that a larger set needs far longer to get there, which by itself
makes its training collapse look better. We give every size the **same optimisation budget**
instead: 1,500 SGD steps of batch 128 (so $N=250$ sees 750 epochs and $N=4000$ sees 47), with a
cosine learning-rate decay to zero so every run ends annealed and at zero training error.
Network: an MLP with three hidden layers of width 128, BatchNorm and ReLU; SGD with momentum 0.9,
learning rate 0.05, weight decay $5\cdot10^{-3}$. NC metrics, CDNV included, are logged on the
training and the held-out split at 15 log-spaced epochs.

The **full** profile runs the same code on CIFAR-10 with ResNet-18 (nested random subsets of
3,125 … 50,000 images, the 10,000 test images, 15,625 steps, weight decay $5\cdot10^{-4}$).

Chapter 3 looks inside the $N=1000$ run at many epochs, so for that run we also keep the weights
at the epochs chapter 3 needs (`keep_states`); the results cache then serves both chapters."""),
code("""SIZES = gen.SIZES[PROFILE]
N_MARGIN = pick(PROFILE, 1000, 12500)  # the run chapter 3 reuses
runs = {}
for n in tqdm(SIZES, desc="training-set sizes"):
    cfg = gen.size_sweep_config(PROFILE, n, seed=SEED)
    runs[n] = fit(cfg, keep_states=gen.margin_epochs(cfg) if n == N_MARGIN else (), progress=False)
pd.DataFrame({"N": list(runs), "epochs": [r.config.epochs for r in runs.values()],
              "seconds": [round(r.seconds, 1) for r in runs.values()],
              "from cache": [r.from_cache for r in runs.values()]}).set_index("N").T"""),
md(r"""## 2.4 Experiment A — train and test collapse during one training run

The same run, measured on both splits at every logged epoch. Solid lines are the training CDNV,
dashed lines the held-out CDNV; one colour per training-set size."""),
code("""hist = {f"N={n}": r.history for n, r in runs.items()}
fig = plots.collapse_panels(hist, panels=[(("cdnv", "test_cdnv"), "CDNV: train (solid) vs test (dashed)",
                                           "CDNV", True),
                                          (("train_error", "test_error"), "Error: train (solid) vs test (dashed)",
                                           "error", False)], ncols=2)
fig.set_size_inches(11, 3.8)
plt.show()"""),
code("""N_A = N_MARGIN
h = runs[N_A].history
tpt = gen.stays_zero_from(h.epoch, h.train_error)
at_tpt, end = h[h.epoch == tpt].iloc[0], h.iloc[-1]
print(f"N = {N_A}: zero training error from logged epoch {tpt} on")
print(f"train CDNV {at_tpt.cdnv:.3g} -> {end.cdnv:.3g} (x{at_tpt.cdnv / end.cdnv:.1f} lower); "
      f"test CDNV {at_tpt.test_cdnv:.3g} -> {end.test_cdnv:.3g} (x{at_tpt.test_cdnv / end.test_cdnv:.2f} lower)")"""),
md(r"""Early in training both curves fall together: the network is learning features that separate
the classes, and that carries over to new inputs. Once the training error reaches zero the two
part ways. The training CDNV keeps dropping by an order of magnitude; the held-out CDNV barely
moves and stays well above it, on every training-set size. This is
the phenomenon Hui et al. describe: at a fixed sample size, the terminal phase improves collapse
only on the data it is fitted to. In the language of the bound, training drives the first term
$(1+A)V_f(S_i,S_j)$ down, and what is left is $B$."""),
md(r"""## 2.5 Experiment B — collapse against the size of the training set

At the end of each run we measure, from the final features: the training and held-out CDNV,
the held-out CDNV around the training means, the test accuracy, and **NC4 on unseen data** —
the fraction of held-out inputs on which the network predicts the class whose *training* mean is
nearest to the input's feature (`nclib.generalization.train_test_collapse`)."""),
code("""table = pd.DataFrame([gen.train_test_collapse(r) for r in runs.values()])
table["gap"] = table.test_cdnv - table.train_cdnv
table.style.format({"train_cdnv": "{:.2e}", "test_cdnv": "{:.3g}", "test_cdnv_train_means": "{:.3g}",
                    "gap": "{:.3g}", "train_accuracy": "{:.3f}", "test_accuracy": "{:.3f}",
                    "ncc_agreement_test": "{:.3f}"}).hide(axis="index")"""),
code("""fig = plots.size_sweep_panels(table, title=f"Test collapse against the training-set size ({PROFILE} profile)")
plt.show()"""),
md(r"""Three things stand out.

1. **Hui et al.'s "anti-correlation" is there.** Under one training budget the *training* CDNV is
   worst for the largest set (it has had the fewest epochs to collapse) while the *held-out*
   CDNV is best for it. Read across sizes, better training collapse goes with worse test collapse.
2. **The survey's explanation is there too.** The held-out CDNV falls steadily with $N$, and the gap
   between held-out and training collapse shrinks with it — the behaviour the bound predicts as
   $A$ and $B$ shrink with more samples per class. Nothing in our runs suggests the gap stops
   closing; a training set far larger than MNIST-1D-at-CPU-scale would be needed to see whether
   it reaches the training level. The apparent anti-correlation is two effects on different axes:
   the budget controls the training collapse, the sample size controls the test collapse.
3. **Unseen data is classified as if by the nearest training mean.** On held-out inputs the
   network and the nearest-training-mean rule agree on almost every input at every size, even
   at $N=250$ where two thirds of those predictions are wrong: the last layer has become a
   nearest-class-centre classifier for all inputs, not only for the training ones. Whether that
   classifier is *accurate* depends on how tightly unseen features gather around the training
   means — the held-out CDNV around the training means falls with $N$ as well.

What this does not settle is the survey's open question: the bound needs a feature map with
small complexity, and neither collapse nor our experiment explains why SGD produces one."""),
*EX_NC4,
md("""## Reproduction checks

The claims are stated once and checked on the runs above; the thresholds are properties of the
claims (orderings and monotone trends), not of one run. Monotone trends across the five sizes
are tested with Spearman's rank correlation: ±1 means the quantity moves the same way at every
step, ±0.9 allows one adjacent pair to swap, ±0.8 allows a little more."""),
code("""ratio_over_training = (h.test_cdnv / h.cdnv).min()
claim("ch2.test-above-train-in-training", f"held-out CDNV exceeds training CDNV at every logged epoch (N = {N_A})",
      value=ratio_over_training, rule="> 1", source="hui2022", chapter=2)
claim("ch2.tpt-train-improves", "during the terminal phase the training CDNV keeps falling, by at least 2x "
      "(onset / end)", value=at_tpt.cdnv / end.cdnv, rule=">= 2", source="papyan2020", chapter=2)
claim("ch2.tpt-test-stalls", "during the terminal phase the held-out CDNV stalls: it changes by less than a "
      "factor 1.5 either way (end / onset)", value=end.test_cdnv / at_tpt.test_cdnv, rule="in [0.6667, 1.5]",
      source="hui2022", chapter=2)
claim("ch2.test-above-train", "at every training-set size, held-out CDNV exceeds training CDNV (min ratio)",
      value=(table.test_cdnv / table.train_cdnv).min(), rule="> 1", source="galanti2022", chapter=2);"""),
code("""N = table.n_train
claim("ch2.gap-shrinks", "the gap test CDNV - train CDNV shrinks as the training set grows (Spearman vs N)",
      value=gen.rank_correlation(N, table.gap), rule="<= -0.8", source="survey2022", chapter=2)
claim("ch2.test-cdnv-falls", "held-out CDNV falls as the training set grows (Spearman vs N)",
      value=gen.rank_correlation(N, table.test_cdnv), rule="<= -0.8", source="galanti2022", chapter=2)
claim("ch2.train-cdnv-rises", "under one step budget, training CDNV is worse for larger sets — Hui et al.'s "
      "apparent anti-correlation (Spearman vs N)",
      value=gen.rank_correlation(N, table.train_cdnv), rule=">= 0.8", source="hui2022", chapter=2)
claim("ch2.accuracy-rises", "test accuracy rises with the training-set size (Spearman vs N)",
      value=gen.rank_correlation(N, table.test_accuracy), rule=">= 0.9", source="survey2022", chapter=2)
claim("ch2.ncc-test", "on held-out inputs the network agrees with the nearest training class mean on >= 90 % "
      "of inputs, at every size (minimum over sizes)",
      value=table.ncc_agreement_test.min(), rule=">= 0.9", source="survey2022", chapter=2);"""),
md("""The {doc}`claims ledger <../book/claims_ledger>` lists the measured values. Chapter 3 turns
from the features to the classifier and asks what collapse means for margins."""),
]

write_chapter(NAME, cells)
