"""Shared pytest setup for the nclib unit tests.

The machines running these tests have few cores shared with other jobs: one BLAS/OpenMP thread
per process is fastest for the small matrices used here.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture
def make_data():
    """Factory for labelled Gaussian-cluster features (float64).

    ``make_data(K, D, counts, seed=0, sep=1.0, noise=1.0)``: ``counts`` is an int (balanced) or a
    list of K per-class counts; class centres are N(0, sep²) entries; samples are shuffled.
    Returns ``(x, y)``.
    """

    def make(K, D, counts, *, seed=0, sep=1.0, noise=1.0, shift=0.0):
        g = torch.Generator().manual_seed(seed)
        if isinstance(counts, int):
            counts = [counts] * K
        assert len(counts) == K
        centres = torch.randn(K, D, generator=g, dtype=torch.float64) * sep + shift
        y = torch.arange(K).repeat_interleave(torch.tensor(counts))
        y = y[torch.randperm(len(y), generator=g)]
        x = centres[y] + noise * torch.randn(len(y), D, generator=g, dtype=torch.float64)
        return x, y

    return make
