r"""Neural-collapse measurements, exact and streaming.

Notation (features are **rows**): N samples :math:`h_i \in \mathbb{R}^D` with labels
:math:`y_i \in \{0..K-1\}`, class counts :math:`n_k`, class means :math:`\mu_k`, global mean
:math:`\mu_G`, centred means :math:`\tilde\mu_k = \mu_k - \mu_G` stacked as the K×D matrix
:math:`\tilde M`; the classifier is ``W`` (K×D) with optional bias ``b`` (K).

Papyan, Han & Donoho (2020), "Prevalence of neural collapse during the terminal phase of deep
learning training", PNAS 117(40), define

* :math:`\Sigma_W = \frac1N\sum_i (h_i-\mu_{y_i})(h_i-\mu_{y_i})^\top` (sample-weighted),
* :math:`\Sigma_B = \frac1K\sum_k \tilde\mu_k\tilde\mu_k^\top` (class-averaged, /K),
* :math:`\mu_G = \frac1N\sum_i h_i` (the sample-weighted global mean).

For balanced classes the two possible global means (over samples or over class means)
coincide. Every convention is a keyword with the Papyan choice as default:

* ``global_mean="samples"`` (Papyan) or ``"classes"`` (mean of class means; the class-balanced
  choice for long-tailed data),
* ``within="samples"`` (Papyan's Σ_W, /N) or ``"classes"`` (average of per-class covariances),
* ``unbiased=True``: standard deviations use the N−1 correction, as Papyan's code (``torch.std``).

The accumulator :class:`FeatureStats` never stores the N×D feature matrix: it keeps per-class
counts, means, sums of squared deviations and (optionally) the pooled within-class scatter in
float64, merged exactly with the pairwise formula of Chan, Golub & LeVeque (1979).
"""

from ._core import PINV_RTOL as PINV_RTOL  # the pseudo-inverse's relative cutoff (read by the benchmark's baseline)
from .stats import (
    FeatureStats,
    cdnv,
    collapse_metrics,
    equiangularity,
    equinorm,
    equinorm_log,
    gram_etf_error,
    hyperspherical_uniformity,
    max_angle,
    nc1,
    ncc_mismatch,
    self_duality,
    self_duality_zhu,
    trace_ratio,
    uniform_duality,
)
from .streaming import NCMetrics, measure, measure_features
from .tracker import TrainingTracker

__all__ = [
    "FeatureStats",
    "nc1",
    "trace_ratio",
    "equinorm",
    "equiangularity",
    "max_angle",
    "gram_etf_error",
    "self_duality",
    "self_duality_zhu",
    "ncc_mismatch",
    "cdnv",
    "equinorm_log",
    "hyperspherical_uniformity",
    "uniform_duality",
    "NCMetrics",
    "collapse_metrics",
    "measure",
    "measure_features",
    "TrainingTracker",
]
