"""Source of notebooks/03_max_margin.ipynb (run: python scripts/chapters/ch03.py)."""
import sys
from pathlib import Path

import nbformat as nbf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from new_chapter import PARAMETERS  # noqa: E402
from sync_notebooks import colab_cells  # noqa: E402
from chapters._otter import assignment_config, question  # noqa: E402
from chapters._write import write_chapter  # noqa: E402

NAME = "03_max_margin.ipynb"
md, code = nbf.v4.new_markdown_cell, nbf.v4.new_code_cell
badge, install = colab_cells(NAME)

EX_MARGIN = question(
    "ex3.1-margins", 2,
    r"""### Exercise 3.1 — multiclass margins

Write `my_margins(W, H, y, b=None)` returning the float64 tensor of length N with the margin of every
sample, $q_i=z_{i,y_i}-\max_{j\ne y_i}z_{i,j}$ where $z_i=Wh_i+b$ are the logits (`W` is K×D, `H` is
N×D with one feature per row, `y` holds integer labels in $0,\dots,K-1$, `b` has length K or is
`None` for no bias). Take care that the maximum runs over the *other* classes only: a sample that is
classified correctly must get a positive margin, not zero.

The visible test compares your margins with `nclib.geometry.margins` on random data where some
samples are classified correctly and others are not. The hidden tests use no bias and the two-class
case, where $q_i=\pm(z_{i,0}-z_{i,1})$ with the sign given by the label.""",
    """def my_margins(W, H, y, b=None):
    # BEGIN SOLUTION
    z = H @ W.T
    if b is not None:
        z = z + b
    rows = torch.arange(len(y))
    own = z[rows, y]
    others = z.clone()
    others[rows, y] = -math.inf
    return own - others.max(1).values
    # END SOLUTION""",
    visible=["""_g = torch.Generator().manual_seed(1)
_W = torch.randn(5, 12, generator=_g, dtype=torch.float64)
_H = torch.randn(60, 12, generator=_g, dtype=torch.float64)
_y = torch.randint(0, 5, (60,), generator=_g)
_b = torch.randn(5, generator=_g, dtype=torch.float64)
_ref = geometry.margins(_W, _H, _y, _b)
assert bool((_ref > 0).any()) and bool((_ref < 0).any())
assert torch.allclose(torch.as_tensor(my_margins(_W, _H, _y, _b), dtype=torch.float64), _ref, rtol=0, atol=1e-10)"""],
    hidden=["""_g = torch.Generator().manual_seed(2)
_W = 3 * torch.randn(8, 20, generator=_g, dtype=torch.float64)
_H = torch.randn(200, 20, generator=_g, dtype=torch.float64) + 1.0
_y = torch.randint(0, 8, (200,), generator=_g)
_ref = geometry.margins(_W, _H, _y)
assert torch.allclose(torch.as_tensor(my_margins(_W, _H, _y), dtype=torch.float64), _ref, rtol=0, atol=1e-10)""",
            """_g = torch.Generator().manual_seed(3)
_W = torch.randn(2, 7, generator=_g, dtype=torch.float64)
_H = torch.randn(30, 7, generator=_g, dtype=torch.float64)
_y = torch.randint(0, 2, (30,), generator=_g)
_z = _H @ _W.T + torch.tensor([0.3, -0.2], dtype=torch.float64)
_q = torch.as_tensor(my_margins(_W, _H, _y, torch.tensor([0.3, -0.2], dtype=torch.float64)), dtype=torch.float64)
assert torch.allclose(_q, (_z[:, 0] - _z[:, 1]) * (1 - 2 * _y), rtol=0, atol=1e-10)"""],
)

EX_NORMALIZED = question(
    "ex3.2-normalized-margins", 2,
    r"""### Exercise 3.2 — margins that do not depend on the scale

Write `my_normalized_margins(W, H, y, b=None)` returning the normalised margins of section 3.2,

$$\bar q_i=\frac{q_i}{\lVert W-\mathbf 1\bar w^\top\rVert_F\;\max_j\lVert h_j-\mu_G\rVert},$$

with $\bar w$ the mean of the rows of `W` and $\mu_G$ the mean of the rows of `H` (float64 tensor of
length N). For the raw margins $q_i$ you may call `geometry.margins(W, H, y, b)` (or your
`my_margins`); the point of the exercise is the scale.

The visible test compares your values with `nclib.geometry.normalized_margins` on post-ReLU-like
features far from the origin (where forgetting to centre changes the answer a lot). The hidden
tests check the four invariances of section 3.2 (scale of `W`, scale of `H`, a vector added to every
row of `W`, a shift of the features that the bias absorbs) and the closed form of section 3.3: for collapsed features on
a simplex ETF with a self-dual classifier the smallest normalised margin equals
$\sqrt K/(K-1)$ (`geometry.etf_margin(K)`) for several $K$.""",
    """def my_normalized_margins(W, H, y, b=None):
    # BEGIN SOLUTION
    q = geometry.margins(W, H, y, b)
    w_scale = (W - W.mean(0)).norm()
    h_scale = (H - H.mean(0)).norm(dim=1).max()
    return q / (w_scale * h_scale)
    # END SOLUTION""",
    visible=["""_g = torch.Generator().manual_seed(4)
_W = torch.randn(6, 16, generator=_g, dtype=torch.float64) + 2.0
_H = torch.relu(torch.randn(80, 16, generator=_g, dtype=torch.float64)) + 3.0
_y = torch.randint(0, 6, (80,), generator=_g)
_b = torch.randn(6, generator=_g, dtype=torch.float64)
_ref = geometry.normalized_margins(_W, _H, _y, _b)
assert torch.allclose(torch.as_tensor(my_normalized_margins(_W, _H, _y, _b), dtype=torch.float64), _ref, rtol=0, atol=1e-12)"""],
    hidden=["""_g = torch.Generator().manual_seed(5)
_W = torch.randn(7, 10, generator=_g, dtype=torch.float64)
_H = torch.randn(50, 10, generator=_g, dtype=torch.float64) + 2.0
_y = torch.randint(0, 7, (50,), generator=_g)
_b = torch.randn(7, generator=_g, dtype=torch.float64)
_v, _c = torch.randn(10, generator=_g, dtype=torch.float64), torch.randn(10, generator=_g, dtype=torch.float64)
_ref = geometry.normalized_margins(_W, _H, _y, _b)
assert torch.allclose(torch.as_tensor(my_normalized_margins(_W, _H, _y, _b), dtype=torch.float64), _ref, rtol=0, atol=1e-12)
_q = torch.as_tensor(my_normalized_margins(7 * _W + _v, 0.2 * _H, _y, 1.4 * _b), dtype=torch.float64)
assert torch.allclose(_q, _ref, rtol=0, atol=1e-12)
_q = torch.as_tensor(my_normalized_margins(_W, _H + _c, _y, _b - _W @ _c), dtype=torch.float64)
assert torch.allclose(_q, _ref, rtol=0, atol=1e-12)
assert torch.allclose(torch.as_tensor(my_normalized_margins(_W, _H, _y), dtype=torch.float64), geometry.normalized_margins(_W, _H, _y), rtol=0, atol=1e-12)""",
            """_g = torch.Generator().manual_seed(6)
for _K in (3, 4, 10):
    _E = geometry.simplex_etf(_K, 12, seed=_K)
    _lab = torch.arange(_K).repeat(3)
    _s = torch.randn(12, generator=_g, dtype=torch.float64)
    _q = torch.as_tensor(my_normalized_margins(0.5 * _E, 4.0 * _E[_lab] + _s, _lab, -0.5 * _E @ _s), dtype=torch.float64)
    assert abs(float(_q.min()) - geometry.etf_margin(_K)) < 1e-10, _K"""],
)

cells = [
assignment_config("ch03"),
md(f"""# Chapter 3 — The max-margin view of collapse

{badge}

Chapter 2 looked at collapse through the features. This chapter looks at the classifier. A
classical reason to expect good generalisation from a classifier that fits its training data is
a large **margin**: every training point is not just on the right side of the decision boundary
but far from it, so small perturbations — including the difference between a training input and
a similar unseen one — do not flip the decision. The survey {{cite}}`survey2022` (§3.2–3.3)
argues that the geometry of neural collapse is exactly the geometry of the largest possible
margin, and that gradient descent is known to drift towards large-margin solutions on its own
{{cite}}`soudry2018`. We make both statements precise, check the first with a two-line
computation, and then measure margins inside a real training run, as Banburski et al. did for
CIFAR-10 {{cite}}`banburski2021`."""),
code(install),
code(PARAMETERS, metadata={"tags": ["parameters"]}),
code("""import math

import matplotlib.pyplot as plt
import pandas as pd
import torch

import nclib
from nclib import generalization as gen
from nclib import geometry, plots
from nclib.claims import claim
from nclib.profiles import pick
from nclib.train import fit, resolve_profile

device = nclib.setup_notebook(PROFILE, SEED)
PROFILE = resolve_profile(PROFILE, "cifar10")  # full needs CIFAR-10; without it: quick, same claims"""),
md(r"""## 3.1 The multiclass margin

Take features $h_i$ (rows), labels $y_i\in\{1,\dots,K\}$ and a last layer with weights
$W\in\mathbb R^{K\times D}$ (rows $w_k$) and bias $b$. The margin of sample $i$ is how far its own
logit is ahead of the strongest competitor:

$$
q_i \;=\; \big(w_{y_i}^\top h_i+b_{y_i}\big)\;-\;\max_{j\ne y_i}\big(w_j^\top h_i+b_j\big),
$$

the survey's $q_{k,i}(W,f)$ for a sample $i$ of class $k$, with the bias written out. It is positive
exactly when the sample is classified correctly. The **dataset margin** is the smallest one,
$q=\min_i q_i$ — the sample closest to being misclassified decides it. This is the multiclass
margin of Crammer and Singer's support-vector machine {cite}`crammer2001`."""),
*EX_MARGIN,
md(r"""## 3.2 Raw margins mean nothing: fixing the scale

Multiply $W$ and $b$ by 10 and every margin is 10 times larger, with not a single decision
changed. With the cross-entropy loss this is not a curiosity: once the training data are separated,
the loss can always be lowered further by scaling the logits up, so raw margins grow through the
terminal phase whether or not the geometry improves. A margin only means something after dividing
by the scale that could have produced it. We divide by

$$
\bar q_i=\frac{q_i}{\lVert W-\mathbf 1\bar w^\top\rVert_F\;\max_j\lVert h_j-\mu_G\rVert},
\qquad \bar w=\tfrac1K\sum_k w_k,\quad \mu_G=\tfrac1N\sum_j h_j ,
$$

and each choice has a reason:

* **$W$ and $H$ both.** The margin is bilinear in the classifier and the features; either can
  carry the scale.
* **Centring the classifier.** Adding the same vector to every row $w_k$ adds the same number to
  every logit and changes no decision, so only $W-\mathbf 1\bar w^\top$ should count.
* **Centring the features.** Shifting every feature by a fixed vector $c$ changes the logits by
  $Wc$, which a bias can absorb. Features after a ReLU sit far from the origin; normalising by
  their raw norm would charge the classifier for an offset it does not use.
* **The largest feature norm, not the average.** With the maximum, the normalised dataset margin
  obeys a clean upper bound for *every* classifier, bias and feature configuration (next section),
  so "fraction of the best possible margin" is well defined.

`nclib.geometry.normalized_margins` computes $\bar q_i$ (the options are keywords)."""),
*EX_NORMALIZED,
md(r"""## 3.3 Why a simplex ETF with self-dual classifiers has the largest margin

Pick one sample $h_k$ of each class and write $\tilde h_k=h_k-\mu_G$. The smallest margin is at most
the average over the classes, and a maximum over competitors is at least their average, so

$$
\min_k q_k \;\le\; \frac1K\sum_k\frac1{K-1}\sum_{j\ne k}\big[(w_k-w_j)^\top\tilde h_k+(w_k-w_j)^\top\mu_G+b_k-b_j\big].
$$

The constant terms $(w_k-w_j)^\top\mu_G+b_k-b_j$ cancel when summed over all ordered pairs, and
$\sum_{j\ne k}(w_k-w_j)=K(w_k-\bar w)$. Cauchy–Schwarz twice then gives

$$
\min_k q_k\;\le\;\frac{1}{K-1}\sum_k (w_k-\bar w)^\top\tilde h_k\;\le\;\frac{\sqrt K}{K-1}\,
\lVert W-\mathbf 1\bar w^\top\rVert_F\,\max_k\lVert\tilde h_k\rVert ,
$$

that is, $\min_i\bar q_i\le\sqrt K/(K-1)$. Every inequality is tight at once exactly when all
centred features of a class coincide (NC1), have equal norms and are the vertices of a simplex
ETF (NC2), every classifier row points along its class mean (NC3), and the biases play no role:
averaging competitors is lossless only if all competitors are equally far, and Cauchy–Schwarz is
tight only if $w_k-\bar w\propto\tilde h_k$ with a common factor. **Neural collapse is the
configuration of largest normalised margin**, and $\sqrt K/(K-1)$ — about 0.351 for $K=10$ — is the
yardstick `nclib.geometry.etf_margin(K)` returns. A numerical check on an exact ETF:"""),
code("""K, D = 10, 32
E = geometry.simplex_etf(K, D, seed=SEED)
labels = torch.arange(K).repeat(5)
shift = torch.randn(D, dtype=torch.float64, generator=torch.Generator().manual_seed(SEED))
H = 4.0 * E[labels] + shift          # collapsed features, anywhere in space
W, b = 0.5 * E, -0.5 * E @ shift     # self-dual classifier; the bias absorbs the shift
q = geometry.normalized_margins(W, H, labels, b)
print(f"normalised margins: min {q.min():.6f}, max {q.max():.6f};  sqrt(K)/(K-1) = {geometry.etf_margin(K):.6f}")
print(f"raw margins ({geometry.margins(W, H, labels, b)[0]:.4f}) change with the scale; normalised ones do not:",
      f"{geometry.normalized_margins(7 * W, H, labels, 7 * b).min():.6f}")"""),
md(r"""## 3.4 Margins through the terminal phase

We reuse chapter 2's run on $N=1000$ MNIST-1D training samples (MLP 3×128 with BatchNorm, SGD,
1,500 steps, cosine decay; full profile: ResNet-18 on 12,500 CIFAR-10 images). That run kept its
weights at about two dozen log-spaced epochs, so the features of every training sample can be recomputed at
each of them; with the results cache warm nothing is trained again. At each kept epoch we compute
the normalised margin of every training sample."""),
code("""N_MARGIN = pick(PROFILE, 1000, 12500)
cfg = gen.size_sweep_config(PROFILE, N_MARGIN, seed=SEED)
run = fit(cfg, keep_states=gen.margin_epochs(cfg), progress=False)
K = run.data.num_classes
traj = gen.margin_trajectory(run)
summary = gen.margin_summary(traj, K)
tpt = gen.stays_zero_from(summary.epoch, summary.negative)
print(f"{len(traj)} kept epochs; every training margin is positive from epoch {tpt} on "
      f"(trained in {run.seconds:.0f} s, from cache: {run.from_cache})")
summary.style.format(precision=3).hide(axis="index")"""),
code("""fig = plots.margin_panels(traj, reference=geometry.etf_margin(K), tpt_epoch=tpt,
                          title=f"Normalised training margins, N = {N_MARGIN} (dashed: ETF value √K/(K−1))")
plt.show()"""),
md(r"""The left panel is the analogue of Banburski et al.'s figure: each curve sorts the normalised
margins of all training samples at one epoch, from dark (early) to yellow (late). At
initialisation most margins are negative. As training proceeds the whole curve rises; in the
terminal phase — from the dotted line on, every margin positive — it keeps rising and, more
strikingly, **flattens**: the smallest margins catch up with the median. A flat curve means every
training sample sits at about the same distance from the boundary, which is what NC1 (all
features of a class at one point) implies. The right panel shows the minimum, the 5 % quantile
and the median against the epoch; all of them move towards the ETF value but stay below it, as
the bound of §3.3 says they must. A dip in the middle of training, when one occurs, is a loss
spike under a still-large learning rate; it is why we start the terminal phase where the training
error becomes zero *for good* rather than where it first touches zero."""),
md(r"""## 3.5 Implicit bias: the trained classifier and the max-margin classifier

Soudry et al. proved that gradient descent on a logistic-type loss over linearly separable data
converges, in direction, to the hard-margin support-vector machine {cite}`soudry2018`. A deep
network is not a linear model — its features move while the last layer learns, and our training
uses weight decay — but in the terminal phase the features are separable and change slowly, so
the last layer faces an almost-fixed separable problem. If the analogy holds, the trained $W$
should point where the multiclass max-margin classifier of the *final, frozen* features points.

We fit that classifier with the Crammer–Singer SVM of scikit-learn
(`nclib.geometry.max_margin_classifier`, centred features, $C=100$ — large enough that on these
separable features the soft margin is the hard one) and compare directions with the cosine of the
centred matrices (`nclib.geometry.classifier_cosine`). As a reference we also compare both with
the centred class means $\tilde M$: NC3 says the trained $W$ should be parallel to them."""),
code("""H, y = gen.run_features(run, "train")
W_net = run.model.classifier.weight.detach().double()
b_net = run.model.classifier.bias.detach().double()
W_svm, b_svm = geometry.max_margin_classifier(H, y, C=100.0, seed=SEED)
means = torch.stack([H[y == k].mean(0) for k in range(K)])
cos = {"trained W vs SVM": geometry.classifier_cosine(W_net, W_svm),
       "trained W vs class means": geometry.classifier_cosine(W_net, means),
       "SVM vs class means": geometry.classifier_cosine(W_svm, means)}
q_net = geometry.normalized_margins(W_net, H, y, b_net).min().item()
q_svm = geometry.normalized_margins(W_svm, H, y, b_svm).min().item()
pd.DataFrame({"cosine": cos, "angle (degrees)": {k: math.degrees(math.acos(min(1.0, v))) for k, v in cos.items()}}).round(3)"""),
code("""print(f"normalised dataset margin — trained network: {q_net:.4f} | max-margin SVM on the same features: {q_svm:.4f} "
      f"| ETF bound: {geometry.etf_margin(K):.4f}")"""),
md(r"""The trained classifier and the max-margin classifier of its own final features point in almost
the same direction, and the trained network already reaches most of the margin that any linear
classifier could get on those features. Both sit below the ETF value because the features
themselves are not yet a perfect ETF; the gap between the SVM and the ETF value is the part of
the margin that only further *feature* collapse could buy. How much of this alignment is the
implicit bias of gradient descent and how much is the weight decay, which also favours
small-norm, large-margin solutions, is one of the open links the survey lists between collapse,
implicit bias and generalisation."""),
md("""## Reproduction checks

The terminal phase is taken from the first kept epoch after which every training margin stays
positive. Trends over the kept epochs of the terminal phase are tested with Spearman's rank
correlation (+1: rising at every step)."""),
code("""tp = summary[summary.epoch >= tpt]
start, last = tp.iloc[0], tp.iloc[-1]
print(f"terminal phase: {len(tp)} kept epochs, {int(start.epoch)} to {int(last.epoch)}")
claim("ch3.min-margin-rises", "the minimum normalised margin rises through the terminal phase (Spearman vs epoch)",
      value=gen.rank_correlation(tp.epoch, tp["min"]), rule=">= 0.8", source="banburski2021", chapter=3)
claim("ch3.min-margin-grows", "the minimum normalised margin grows by at least half over the terminal phase "
      "(end / onset)", value=last["min"] / start["min"], rule=">= 1.5", source="banburski2021", chapter=3)
claim("ch3.margins-narrow", "the margin distribution narrows: its coefficient of variation at least halves over "
      "the terminal phase (end / onset)", value=last["cov"] / start["cov"], rule="<= 0.5",
      source="banburski2021", chapter=3)
claim("ch3.etf-fraction", "the minimum normalised margin ends between a third of the ETF value sqrt(K)/(K-1) "
      "and the value itself (the upper bound)", value=last["min_vs_etf"], rule="in [0.3333, 1]",
      source="survey2022", chapter=3);"""),
code("""claim("ch3.svm-cosine", "the trained classifier points along the max-margin (Crammer-Singer) classifier of "
      "its final features: cosine >= 0.9", value=cos["trained W vs SVM"], rule=">= 0.9",
      source="soudry2018", chapter=3)
claim("ch3.svm-margin", "the trained network reaches at least 70 % of the max-margin classifier's normalised "
      "margin on its own features", value=q_net / q_svm, rule=">= 0.7", source="soudry2018", chapter=3);"""),
md("""The {doc}`claims ledger <../book/claims_ledger>` lists the measured values."""),
]

write_chapter(NAME, cells)
