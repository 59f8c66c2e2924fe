r"""Out-of-distribution detection from collapse: NC5 and the NECO score (Ben Ammar et al., 2024).

Ben Ammar, Belkhir, Popescu, Manzanera & Franchi, *NECO: NEural Collapse Based Out-of-distribution
detection*, ICLR 2024 (bib key ``ammar2024neco``). Their observation (NC5): late in training the
features of out-of-distribution (OoD) inputs concentrate near the origin of the in-distribution
(ID) principal subspace — the OoD mean becomes orthogonal to the ID class means — so the share of
a feature's norm that lies in the ID principal subspace separates ID from OoD inputs.

Functions (all float64, pure functions of tensors):

* :func:`nc5` — the mean absolute cosine between each ID class mean :math:`\mu_c` and the OoD
  global mean :math:`\mu_G^{\mathrm{OoD}}`:

  .. math:: \mathrm{NC5} = \frac1K \sum_{c=1}^K
            \frac{|\langle \mu_c, \mu_G^{\mathrm{OoD}} \rangle|}{\lVert\mu_c\rVert\,\lVert\mu_G^{\mathrm{OoD}}\rVert}

  0 is exact orthogonality. Means are raw (not centred), as in the paper; ``center=True``
  subtracts the ID global mean from both first (a variant, for features with a large common
  offset such as post-ReLU activations).
* :class:`NECO` — fitted on ID training features: each feature dimension is standardised with
  the ID training mean :math:`\bar h` and standard deviation :math:`s` (as scikit-learn's
  ``StandardScaler`` in the authors' code; a dimension with zero variance keeps scale 1), the
  principal directions of the standardised features are computed (PCA, i.e. the eigenvectors of
  their covariance), and with :math:`z = (h - \bar h) / s`

  .. math:: \mathrm{NECO}(h) = \frac{\lVert P_d\, z\rVert}{\lVert z\rVert}

  where :math:`P_d` projects on the top ``d`` principal directions. Larger means "more ID".
  ``standardize=False`` skips the division by :math:`s` (the authors' choice for vision
  transformers, whose classes are already well separated); the paper multiplies by the maximum
  logit for those models (``max_logit=True`` here), not for ResNets; the default is the plain
  ratio on standardised features, their ResNet setting.
* :func:`max_softmax` — the maximum softmax probability baseline (Hendrycks & Gimpel, 2017).
* :func:`auroc` — the area under the ROC curve for "ID scores higher than OoD scores", computed
  exactly as the Mann–Whitney statistic with ties counted one half.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from . import _validate as _v

__all__ = ["nc5", "NECO", "max_softmax", "auroc"]


def _features(x, name: str) -> Tensor:
    x = _v.tensor(x, name, ndim=2, floating=True, nonempty=True)
    return x.detach().to(torch.float64)


def nc5(
    id_features: Tensor,
    id_labels: Tensor,
    ood_features: Tensor,
    *,
    num_classes: int | None = None,
    center: bool = False,
) -> float:
    """NC5: mean |cosine| between the ID class means and the OoD mean (see the module docstring).

    ``id_features`` N×D with integer ``id_labels`` (every class ``0..K-1`` present),
    ``ood_features`` M×D. Returns a number in [0, 1]; 0 = OoD mean orthogonal to every ID mean."""
    H = _features(id_features, "id_features")
    Z = _features(ood_features, "ood_features")
    if Z.shape[1] != H.shape[1]:
        raise ValueError(f"ood_features must have D = {H.shape[1]} columns like id_features, got {Z.shape[1]}")
    y = _v.labels(id_labels, "id_labels", n=H.shape[0], what="id_features")  # H has rows, so y is not empty
    K = int(y.max()) + 1 if num_classes is None else _v.integer(num_classes, "num_classes", lo=2)
    if K < 2:
        raise ValueError(f"id_labels: need at least 2 classes, got {K}")
    y = _v.labels(y, "id_labels", num_classes=K)
    _v.boolean(center, "center")
    counts = torch.bincount(y, minlength=K)
    if bool((counts == 0).any()):
        raise ValueError(f"id_labels: class(es) {torch.nonzero(counts == 0).flatten().tolist()} have no samples")
    means = torch.zeros(K, H.shape[1], dtype=torch.float64).index_add_(0, y, H) / counts[:, None]
    ood_mean = Z.mean(0)
    if center:
        g = H.mean(0)
        means, ood_mean = means - g, ood_mean - g
    mn, on = means.norm(dim=1), ood_mean.norm()
    if bool((mn == 0).any()) or float(on) == 0.0:
        raise ValueError("nc5 is undefined: a class mean or the OoD mean is the zero vector")
    return float(((means @ ood_mean).abs() / (mn * on)).mean())


@dataclass
class NECO:
    """The NECO detector: fit on ID training features, then :meth:`score` any features.

    ``dim``: the number ``d`` of principal directions kept (the paper tunes it; a natural choice
    under collapse is K−1 or K, the dimension of the class-mean simplex). ``standardize``: divide
    each centred dimension by its ID training standard deviation first (the authors' code does, for
    convolutional networks)."""

    dim: int
    standardize: bool = True
    mean: Tensor | None = None
    scale: Tensor | None = None  # D, the per-dimension divisor (ones when standardize=False)
    components: Tensor | None = None  # D×D, columns = principal directions, by decreasing variance

    def __post_init__(self):
        self.dim = _v.integer(self.dim, "dim", lo=1)
        self.standardize = _v.boolean(self.standardize, "standardize")

    def fit(self, id_features: Tensor) -> NECO:
        H = _features(id_features, "id_features")
        if self.dim > H.shape[1]:
            raise ValueError(f"dim must be ≤ the feature dimension {H.shape[1]}, got {self.dim}")
        if H.shape[0] < 2:
            raise ValueError(f"id_features needs at least 2 rows to fit principal directions, got {H.shape[0]}")
        self.mean = H.mean(0)
        Z = H - self.mean
        if self.standardize:
            sd = Z.pow(2).mean(0).sqrt()  # population standard deviation, as StandardScaler
            self.scale = torch.where(sd > 0, sd, torch.ones_like(sd))
        else:
            self.scale = torch.ones(H.shape[1], dtype=torch.float64)
        Z = Z / self.scale
        C = Z.T @ Z / (H.shape[0] - 1)
        evals, evecs = torch.linalg.eigh(C)
        self.components = evecs.flip(1)  # decreasing variance
        return self

    def score(self, features: Tensor, logits: Tensor | None = None, *, max_logit: bool = False) -> Tensor:
        """NECO(h) for each row of ``features`` (length-N float64 tensor); higher = more ID."""
        if self.components is None:
            raise ValueError("NECO.score: call fit(id_features) first")
        Z = _features(features, "features")
        if Z.shape[1] != self.components.shape[0]:
            raise ValueError(f"features must have D = {self.components.shape[0]} columns, got {Z.shape[1]}")
        coords = ((Z - self.mean) / self.scale) @ self.components
        total = coords.norm(dim=1)
        if bool((total == 0).any()):
            raise ValueError("features: a row equals the ID training mean, its NECO ratio is 0/0")
        s = coords[:, : self.dim].norm(dim=1) / total
        if _v.boolean(max_logit, "max_logit"):
            L = _features(logits, "logits") if logits is not None else None
            if L is None or L.shape[0] != Z.shape[0]:
                raise ValueError("logits: max_logit=True needs one row of logits per feature row")
            s = s * L.max(dim=1).values
        return s


def max_softmax(logits: Tensor) -> Tensor:
    """The maximum softmax probability of each row (float64); higher = more ID."""
    L = _features(logits, "logits")
    return torch.softmax(L, dim=1).max(dim=1).values


def auroc(id_scores: Tensor, ood_scores: Tensor) -> float:
    """P(score_ID > score_OoD) + ½ P(equal): the exact area under the ROC curve (Mann–Whitney).

    1 = every ID input scores above every OoD input; 0.5 = no separation."""
    a = _v.tensor(id_scores, "id_scores", ndim=1, floating=True, nonempty=True).detach().to(torch.float64)
    b = _v.tensor(ood_scores, "ood_scores", ndim=1, floating=True, nonempty=True).detach().to(torch.float64)
    allv = torch.cat([a, b])
    # average ranks (1-based), tied values sharing the mean of their ranks
    order = torch.argsort(allv, stable=True)
    _, inv, cnt = torch.unique_consecutive(allv[order], return_inverse=True, return_counts=True)
    mean_rank = torch.cumsum(cnt, 0).to(torch.float64) - (cnt.to(torch.float64) - 1) / 2
    ranks = torch.empty_like(allv)
    ranks[order] = mean_rank[inv]
    na, nb = a.numel(), b.numel()
    u = float(ranks[:na].sum()) - na * (na + 1) / 2
    return u / (na * nb)
