"""NC5, NECO, max-softmax and AUROC against analytic cases (nclib.ood)."""

import math

import pytest
import torch

from nclib import ood


def test_auroc_analytic():
    a = torch.tensor([3.0, 4.0, 5.0])
    b = torch.tensor([0.0, 1.0, 2.0])
    assert ood.auroc(a, b) == 1.0 and ood.auroc(b, a) == 0.0
    assert ood.auroc(torch.ones(4), torch.ones(3)) == 0.5  # all ties
    # one ID score ties one OoD score, the rest separate: (3*2 - 1 + 0.5) / 6
    assert ood.auroc(torch.tensor([1.0, 5.0, 6.0]), torch.tensor([1.0, 0.0])) == pytest.approx((5 + 0.5) / 6)


def test_auroc_matches_pairwise_count():
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 5, (40,), generator=g).double()
    b = torch.randint(0, 5, (30,), generator=g).double()
    pairs = (a[:, None] > b[None, :]).double() + 0.5 * (a[:, None] == b[None, :]).double()
    assert ood.auroc(a, b) == pytest.approx(float(pairs.mean()), abs=1e-15)


def test_nc5_orthogonal_and_parallel():
    means = torch.eye(3, 4, dtype=torch.float64) * 5  # ID class means e1, e2, e3
    y = torch.arange(30) % 3
    H = means[y]
    Z_orth = torch.zeros(10, 4, dtype=torch.float64)
    Z_orth[:, 3] = 2.0  # OoD mean along e4
    assert ood.nc5(H, y, Z_orth) == 0.0
    Z_par = torch.ones(10, 4, dtype=torch.float64)
    Z_par[:, 3] = 0.0  # OoD mean (1,1,1,0): cosine 1/sqrt(3) with each
    assert ood.nc5(H, y, Z_par) == pytest.approx(1 / math.sqrt(3), abs=1e-15)


def test_neco_ratio_analytic():
    # ID features spread along e1, e2 only; OoD along e3: NECO with d = 2 is 1 for ID, 0 for OoD
    g = torch.Generator().manual_seed(1)
    H = torch.zeros(200, 3, dtype=torch.float64)
    H[:, :2] = torch.randn(200, 2, generator=g, dtype=torch.float64) * torch.tensor([3.0, 2.0], dtype=torch.float64)
    det = ood.NECO(dim=2, standardize=False).fit(H)
    idq = H[:5] + 0.0
    oodq = det.mean + torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)
    assert torch.allclose(det.score(idq), torch.ones(5, dtype=torch.float64), atol=1e-12)
    assert float(det.score(oodq)[0]) == pytest.approx(0.0, abs=1e-12)
    # a 45° vector between the subspace and its complement scores cos 45°
    q = det.mean + torch.tensor([[1.0, 0.0, 1.0]], dtype=torch.float64)
    assert float(det.score(q)[0]) == pytest.approx(1 / math.sqrt(2), abs=1e-12)
    assert ood.auroc(det.score(idq), det.score(oodq)) == 1.0


def test_neco_standardized_matches_the_authors_scaler_and_pca():
    """Standardised NECO = ||top-d PCA coordinates|| / ||z|| with z from StandardScaler (authors' code)."""
    sk = pytest.importorskip("sklearn")
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    g = torch.Generator().manual_seed(3)
    H = torch.randn(300, 6, generator=g, dtype=torch.float64) @ torch.randn(6, 6, generator=g, dtype=torch.float64)
    H = H * torch.tensor([1.0, 10.0, 0.1, 3.0, 1.0, 0.5], dtype=torch.float64) + 2.0
    H[:, 4] = 1.5  # a dead unit: zero variance keeps scale 1, as StandardScaler
    Q = torch.randn(40, 6, generator=g, dtype=torch.float64) * 3
    ss = StandardScaler().fit(H.numpy())
    pca = PCA(6).fit(ss.transform(H.numpy()))
    zq = ss.transform(Q.numpy())
    ref = torch.from_numpy((pca.transform(zq)[:, :3] ** 2).sum(1) ** 0.5 / (zq**2).sum(1) ** 0.5)
    got = ood.NECO(dim=3).fit(H).score(Q)
    assert sk is not None and torch.allclose(got, ref, atol=1e-10, rtol=0)
    # invariant to rescaling each feature dimension (ID and queries alike); the plain ratio is not
    c = torch.tensor([5.0, 0.2, 1.0, 7.0, 1.0, 3.0], dtype=torch.float64)
    assert torch.allclose(ood.NECO(dim=3).fit(H * c).score(Q * c), got, atol=1e-10, rtol=0)
    plain = ood.NECO(dim=3, standardize=False)
    assert not torch.allclose(plain.fit(H * c).score(Q * c), plain.fit(H).score(Q), atol=1e-3)


def test_neco_max_logit_and_msp():
    H = torch.randn(50, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    det = ood.NECO(dim=2).fit(H)
    L = torch.tensor([[2.0, 0.0], [0.0, 3.0]], dtype=torch.float64)
    s = det.score(H[:2], L, max_logit=True)
    assert torch.allclose(s, det.score(H[:2]) * torch.tensor([2.0, 3.0], dtype=torch.float64))
    p = ood.max_softmax(torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]]))
    assert torch.allclose(p, torch.tensor([0.5, 0.75], dtype=torch.float64))


@pytest.mark.parametrize(
    "call, err, pattern",
    [
        (lambda: ood.NECO(dim=0), ValueError, "dim"),
        (lambda: ood.NECO(dim=2, standardize="yes"), TypeError, "standardize"),
        (lambda: ood.NECO(dim=2.5), TypeError, "dim"),
        (lambda: ood.NECO(dim=5).fit(torch.randn(10, 3)), ValueError, "dim"),
        (lambda: ood.NECO(dim=1).score(torch.randn(3, 2)), ValueError, "fit"),
        (lambda: ood.NECO(dim=1).fit(torch.randn(10, 3)).score(torch.randn(3, 2)), ValueError, "features"),
        (
            lambda: ood.nc5(torch.randn(6, 2), torch.tensor([0, 1, 0, 1, 0, 1]), torch.randn(3, 3)),
            ValueError,
            "ood_features",
        ),
        (
            lambda: ood.nc5(torch.randn(6, 2), torch.tensor([0, 1, 0, 1, 0, 3]), torch.randn(3, 2), num_classes=4),
            ValueError,
            "id_labels",
        ),
        (
            lambda: ood.nc5(torch.randn(6, 2).numpy(), torch.tensor([0, 1, 0, 1, 0, 1]), torch.randn(3, 2)),
            TypeError,
            "id_features",
        ),
        (lambda: ood.auroc(torch.tensor([]), torch.ones(2)), ValueError, "id_scores"),
        (lambda: ood.auroc(torch.ones(2), torch.tensor([[1.0]])), ValueError, "ood_scores"),
        (lambda: ood.max_softmax(torch.tensor([1.0, 2.0])), ValueError, "logits"),
    ],
)
def test_bad_input(call, err, pattern):
    with pytest.raises(err, match=pattern):
        call()
