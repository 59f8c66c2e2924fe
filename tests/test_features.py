"""nclib.features (the one feature extractor) and nclib._rng (the one seed → generator rule)."""

import pytest
import torch

from nclib import _rng, models, transfer
from nclib.features import FeatureTap, extract
from nclib.train import features_of


def _mlp():
    m = models.build("mlp", (12,), 3, width=8, depth=2, batchnorm=True)
    m.train()
    return m


X = torch.randn(37, 12, generator=torch.Generator().manual_seed(0))


def test_penultimate_features_are_model_features_in_eval_mode_float64():
    m = _mlp()
    got = extract(m, X, batch_size=10)
    assert m.training  # mode restored
    m.eval()
    with torch.no_grad():
        want = m.features(X).double()
    assert got.dtype == torch.float64 and got.shape == (37, 8)
    assert torch.allclose(got, want, rtol=0, atol=1e-6)
    assert torch.equal(features_of(m, X, batch_size=10), got)
    assert torch.equal(transfer.features_at(m, X, batch_size=10), got)


def test_where_input_and_output_of_a_named_layer():
    m = _mlp()
    out2 = extract(m, X, "body.2", where="output")
    assert torch.equal(extract(m, X, "body.3", where="input"), out2)  # ReLU's output feeds the next Linear
    # the classifier's input is the penultimate feature, tapped through the full forward pass
    assert torch.equal(extract(m, X, "classifier", where="input", through="forward"), extract(m, X))
    assert torch.equal(transfer.features_at(m, X, "body.2"), out2)


def test_a_named_layer_must_say_where_and_must_run():
    m = _mlp()
    with pytest.raises(ValueError, match="where="):
        extract(m, X, "body.2")
    with pytest.raises(ValueError, match="not used by model.features"):
        extract(m, X, "classifier", where="input")
    with pytest.raises(ValueError, match="no submodule"):
        extract(m, X, "nope", where="output")
    with pytest.raises(ValueError, match="through"):
        FeatureTap(m, through="sideways")
    with pytest.raises(TypeError, match="features"):
        extract(torch.nn.Linear(12, 3), X)
    assert m.training


def test_spatial_outputs_are_pooled_or_flattened():
    m = models.build("cnn1d", (40,), 3, channels=4, width=8).eval()
    Xc = torch.randn(5, 40, generator=torch.Generator().manual_seed(1))
    pooled = extract(m, Xc, "conv.2", where="output")
    flat = extract(m, Xc, "conv.2", where="output", pool="flatten")
    assert pooled.shape == (5, 4) and flat.shape == (5, 4 * 20)
    assert torch.allclose(pooled, flat.reshape(5, 4, 20).mean(2))
    assert extract(m, Xc[:0]).shape == (0, 0)


def test_the_tap_streams_batches_and_cleans_up():
    m = _mlp()
    with FeatureTap(m, "body.2", where="output") as tap:
        a = tap(X[:5])
        assert not m.training
    assert m.training and not m.body[2]._forward_hooks
    assert a.shape == (5, 8) and a.dtype == torch.float32


def test_generator_rule():
    g = torch.Generator()
    assert _rng.generator(g) is g
    assert torch.equal(
        torch.rand(3, generator=_rng.generator(5)), torch.rand(3, generator=torch.Generator().manual_seed(5))
    )
    assert torch.equal(
        torch.rand(2, generator=_rng.generator(None, allow_none=True)),
        torch.rand(2, generator=torch.Generator().manual_seed(0)),
    )
    with pytest.raises(TypeError, match=r"seed must be an int or a torch.Generator, got float"):
        _rng.generator(1.5)
    with pytest.raises(TypeError, match=r"seed must be an int, got Generator"):
        _rng.generator(g, allow_generator=False)
    with pytest.raises(TypeError, match=r"seed must be an int, a torch.Generator or None, got str"):
        _rng.generator("0", allow_none=True)
    with pytest.raises(TypeError):
        _rng.generator(True)
    want = torch.Generator().manual_seed((3 * 1_000_003 + 5) % (2**63 - 1))
    assert torch.equal(torch.rand(4, generator=_rng.mixed_generator(3, 5)), torch.rand(4, generator=want))
    neg = torch.Generator().manual_seed((-7) % (2**63 - 1))
    assert torch.equal(torch.rand(2, generator=_rng.mixed_generator(-7)), torch.rand(2, generator=neg))
