r"""The unconstrained features model (UFM) and the exact computations of the theory lab.

**The model.** In the UFM the last-layer features are free variables optimised together with
the classifier (Mixon et al. 2022; Zhu et al. 2021). With the book's conventions (features are
rows): free features ``H`` (N×D), classifier ``W`` (K×D), optional bias ``b`` (K), targets
``Y`` (N×K, one-hot rows for classification, arbitrary reals for regression). A *deep* UFM
(Súkeník et al. 2024) passes ``H`` through L−1 layers before the classifier,

.. math:: H_1 = H,\qquad H_{l+1} = \sigma(H_l A_l^\top)\ (l = 1..L-1),\qquad Z = H_L W^\top + \mathbf 1 b^\top,

with σ the identity or ReLU. The objective minimised by :func:`train_ufm` is

.. math:: F = \ell(Z, Y) + \tfrac{\lambda_H}{2}\lVert H\rVert_F^2
          + \sum_{l}\tfrac{\lambda_l}{2}\lVert A_l\rVert_F^2 + \tfrac{\lambda_W}{2}\lVert W\rVert_F^2
          + \tfrac{\lambda_b}{2}\lVert b\rVert^2,

with :math:`\ell = \frac1N\sum_i \mathrm{CE}(z_i, y_i)` (cross-entropy) or
:math:`\ell = \frac1{2N}\lVert Z - Y\rVert_F^2` (MSE) — the normalisation of Zhu et al. (2021):
the loss is averaged over samples, the feature penalty is not.

**Closed forms** (derived in the docstrings; each has a unit test):

* :func:`mse_ufm_optimum` — the MSE UFM optimum by the variational form of the nuclear norm
  (singular-value soft thresholding of the targets);
* :func:`ce_ufm_optimum` — the CE UFM optimum on the simplex-ETF family (Zhu et al. 2021);
* :func:`dnc_loss` — the regularised loss of the best deep-neural-collapse configuration of a deep
  UFM (the reference point of Súkeník et al. 2024), and :func:`low_rank_configuration`, an explicit
  lower-rank configuration with its loss;
* :func:`nrc_optimal_gram` — :math:`WW^\top` at the regression UFM optimum (Andriopoulos et al. 2024);
* :func:`hadamard_reduced_gd` — cross-entropy gradient descent under Hadamard initialisation
  reduced to 2K scalars (Garrod et al. 2025).
"""

from __future__ import annotations

from ._common import ACTIVATIONS, LOSSES, NC_KEYS, OPTIMIZERS, RECORDS, class_labels  # noqa: F401
from .central_path import central_path_decomposition, least_squares_classifier, network_central_path  # noqa: F401
from .closed_forms import ce_ufm_optimum, mse_ufm_optimum  # noqa: F401
from .deep import class_mean_spectra, dnc_configuration, dnc_loss, low_rank_configuration, numerical_rank  # noqa: F401
from .hadamard import hadamard, hadamard_init, hadamard_reduced_gd, principal_angles, singular_drift  # noqa: F401
from .regression import MNIST1D_LATENTS, mnist1d_latents, nrc_metrics, nrc_optimal_gram, train_regression_mlp  # noqa: F401
from .solver import UFMResult, train_ufm, train_ufm_restarts, ufm_forward, ufm_objective  # noqa: F401

__all__ = [
    "class_labels",
    "ufm_forward",
    "ufm_objective",
    "UFMResult",
    "train_ufm",
    "train_ufm_restarts",
    "mse_ufm_optimum",
    "ce_ufm_optimum",
    "least_squares_classifier",
    "central_path_decomposition",
    "network_central_path",
    "dnc_loss",
    "dnc_configuration",
    "low_rank_configuration",
    "class_mean_spectra",
    "numerical_rank",
    "nrc_metrics",
    "nrc_optimal_gram",
    "hadamard",
    "hadamard_init",
    "hadamard_reduced_gd",
    "principal_angles",
    "singular_drift",
    "mnist1d_latents",
    "train_regression_mlp",
]
