"""nclib.models: the features()/classifier split, the fixed ETF head, validation."""

import math

import pytest
import torch
from torch import nn

from nclib import models
from nclib.geometry import simplex_etf
from nclib.models import FixedETFClassifier, build, count_parameters, make_head


def _x(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    "name, shape, kw, dim",
    [
        ("mlp", (8,), dict(width=16, depth=2, batchnorm=True), 16),
        ("mlp", (8,), dict(width=12, depth=1, batchnorm=False), 12),
        ("mlp", (1, 6, 6), dict(width=10, depth=1), 10),  # image input is flattened
        ("cnn1d", (40,), dict(channels=4, width=16), 16),
        ("cnn1d", (20,), dict(channels=2, width=8, batchnorm=False), 8),
    ],
)
def test_features_classifier_split(name, shape, kw, dim):
    K = 5
    m = build(name, shape, K, **kw).eval()
    x = _x(3, *shape)
    with torch.no_grad():
        h = m.features(x)
        assert h.shape == (3, dim)
        assert isinstance(m.classifier, nn.Linear) and m.classifier.weight.shape == (K, dim)
        assert torch.equal(m(x), m.classifier(h))
        assert m(x).shape == (3, K)


def test_resnet18_gives_512d_features_on_cifar_shaped_batch():
    m = build("resnet18", (3, 32, 32), 10).eval()
    x = _x(2, 3, 32, 32)
    with torch.no_grad():
        h = m.features(x)
        assert h.shape == (2, 512)
        assert torch.equal(m(x), m.classifier(h))
    assert m.classifier.weight.shape == (10, 512)
    # CIFAR-style stem: a 3×3 convolution, no max-pool
    assert m.stem[0].kernel_size == (3, 3) and m.stem[0].stride == (1, 1)
    assert not any(isinstance(mod, nn.MaxPool2d) for mod in m.modules())


def test_resnet18_width_scales_feature_dim():
    m = build("resnet18", (1, 8, 8), 3, width=4).eval()
    with torch.no_grad():
        assert m.features(_x(2, 1, 8, 8)).shape == (2, 32)  # 8 × width


def test_build_is_seeded_and_leaves_global_rng_alone():
    state = torch.get_rng_state()
    a = build("mlp", (8,), 4, width=16, depth=2, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    b = build("mlp", (8,), 4, width=16, depth=2, seed=3)
    c = build("mlp", (8,), 4, width=16, depth=2, seed=4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_fixed_etf_head_is_a_frozen_simplex_etf():
    K, D = 5, 12
    head = FixedETFClassifier(D, K, seed=2)
    assert list(head.parameters()) == []
    W = head.weight.double()
    assert W.shape == (K, D)
    assert torch.allclose(W.norm(dim=1), torch.ones(K, dtype=torch.float64), atol=1e-6)
    G = W @ W.T
    off = G[~torch.eye(K, dtype=torch.bool)]
    assert torch.allclose(off, torch.full_like(off, -1 / (K - 1)), atol=1e-6)
    assert torch.allclose(W.sum(0), torch.zeros(D, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(W, simplex_etf(K, D, seed=2), atol=1e-6)
    # the ETF is a buffer: it is saved with the model
    assert "weight" in head.state_dict()


def test_fixed_etf_head_forward_scale_and_normalize():
    K, D = 4, 6
    h = _x(7, D)
    plain = FixedETFClassifier(D, K, seed=0)
    assert torch.allclose(plain(h), h @ plain.weight.T)
    scaled = FixedETFClassifier(D, K, seed=0, scale=3.0, normalize=True)
    hn = h / h.norm(dim=1, keepdim=True)
    assert torch.allclose(scaled(h), 3.0 * hn @ scaled.weight.T, atol=1e-6)


def test_etf_head_in_a_model_and_parameter_savings():
    K, width = 4, 16
    lin = build("mlp", (8,), K, width=width, depth=2, batchnorm=False)
    etf = build("mlp", (8,), K, width=width, depth=2, batchnorm=False, head="etf")
    assert isinstance(etf.classifier, FixedETFClassifier)
    assert count_parameters(lin) - count_parameters(etf) == K * width + K
    # buffers never count, even with trainable_only=False
    assert count_parameters(etf, trainable_only=False) == count_parameters(etf)
    with torch.no_grad():
        x = _x(3, 8)
        assert torch.equal(etf(x), etf.classifier(etf.features(x)))
    # a frozen head gets no gradient and is untouched by an optimiser step
    W0 = etf.classifier.weight.clone()
    opt = torch.optim.SGD(etf.parameters(), lr=0.1)
    etf(_x(5, 8)).sum().backward()
    opt.step()
    assert torch.equal(etf.classifier.weight, W0)


def test_count_parameters_counts_frozen_params_only_when_asked():
    m = build("mlp", (4,), 3, width=5, depth=1, batchnorm=False)
    n_all = count_parameters(m)
    assert n_all == (4 * 5 + 5) + (5 * 3 + 3)
    m.classifier.weight.requires_grad_(False)
    assert count_parameters(m) == n_all - 15
    assert count_parameters(m, trainable_only=False) == n_all


def test_head_bias_option():
    m = build("mlp", (4,), 3, width=5, depth=1, head_bias=False)
    assert m.classifier.bias is None


def test_make_head():
    assert isinstance(make_head("linear", 6, 3), nn.Linear)
    assert isinstance(make_head("etf", 6, 3), FixedETFClassifier)
    with pytest.raises(ValueError, match="unknown head"):
        make_head("cosine", 6, 3)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: build("vgg", (8,), 4), "unknown model"),
        (lambda: build("mlp", (8,), 4, head="cosine"), "unknown head"),
        (lambda: build("mlp", (8,), 1), "num_classes"),
        (lambda: build("mlp", (8,), 4.0), "num_classes"),
        (lambda: build("resnet18", (3072,), 10), "resnet18 needs image inputs"),
        (lambda: build("resnet18", (32, 32), 10), "resnet18 needs image inputs"),
        (lambda: build("mlp", (8,), 4, depth=0), "depth"),
        (lambda: build("mlp", (8,), 4, width=0), "width"),
        (lambda: build("mlp", (8,), 5, width=3, head="etf"), "simplex ETF"),  # K > D+1
        (lambda: FixedETFClassifier(2, 4), "simplex ETF"),
    ],
)
def test_validation_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_etf_head_allows_k_equal_d_plus_one():
    head = FixedETFClassifier(3, 4)
    G = head.weight.double() @ head.weight.double().T
    assert torch.allclose(torch.diagonal(G), torch.ones(4, dtype=torch.float64), atol=1e-6)
    assert math.isclose(float(G[0, 1]), -1 / 3, abs_tol=1e-6)


def test_bad_seed_type():
    with pytest.raises(TypeError, match="seed"):
        build("mlp", (8,), 4, seed=1.5)


def test_models_registry():
    assert set(models.MODELS) == {"mlp", "cnn1d", "resnet18"}


# --- Zhu et al. (2021): feature dimension d = K under a fixed, coordinate-aligned ETF head ---


def test_coordinate_etf_is_a_simplex_etf_aligned_with_the_coordinates():
    from nclib.geometry import coordinate_etf

    K, D = 6, 9
    E = coordinate_etf(K, D)
    assert E.shape == (K, D) and torch.all(E[:, K:] == 0)
    assert torch.allclose(E.norm(dim=1), torch.ones(K, dtype=E.dtype), atol=1e-15)
    G = E @ E.T
    off = G[~torch.eye(K, dtype=torch.bool)]
    assert torch.allclose(off, torch.full_like(off, -1 / (K - 1)), atol=1e-15)
    assert torch.allclose(E.sum(0), torch.zeros(D, dtype=E.dtype), atol=1e-15)
    # a coordinate vector e_k (non-negative, as after a ReLU) is scored highest by row k
    assert torch.equal((torch.eye(K, D, dtype=E.dtype) @ E.T).argmax(1), torch.arange(K))
    with pytest.raises(ValueError, match="D must be"):
        coordinate_etf(5, 4)


def test_random_etf_can_leave_a_class_unreachable_from_nonnegative_features():
    # why Zhu et al.'s d = K head is coordinate-aligned: with a random rotation in D = K some class's
    # region of the logits misses the non-negative orthant (checked by sampling it densely)
    K = 10
    unreachable = 0
    for seed in range(10):
        E = simplex_etf(K, K, seed=seed)
        h = torch.rand(200_000, K, dtype=E.dtype, generator=torch.Generator().manual_seed(seed)) ** 4
        unreachable += K - int((h @ E.T).argmax(1).unique().numel())
    assert unreachable > 0


def test_fixed_etf_head_orientation_and_learnable_bias():
    head = FixedETFClassifier(10, 10, orientation="coordinate", learn_bias=True)
    assert count_parameters(head) == 10 and head.bias is not None and torch.all(head.bias == 0)
    from nclib.geometry import coordinate_etf

    assert torch.equal(head.weight, coordinate_etf(10, 10, dtype=torch.float32))
    h = torch.randn(4, 10)
    with torch.no_grad():
        head.bias += 1.0
    assert torch.allclose(head(h), h @ head.weight.T + 1.0)
    with pytest.raises(ValueError, match="orientation"):
        FixedETFClassifier(10, 10, orientation="rotated")
    with pytest.raises(TypeError, match="learn_bias"):
        FixedETFClassifier(10, 10, learn_bias=1)


def test_mlp_feature_dim_narrows_only_the_last_hidden_layer():
    K, W, d = 10, 64, 10
    full = build("mlp", (40,), K, width=W, depth=3, batchnorm=True, head="linear", head_bias=False)
    narrow = build(
        "mlp",
        (40,),
        K,
        width=W,
        depth=3,
        batchnorm=True,
        head="etf",
        orientation="coordinate",
        learn_bias=True,
        feature_dim=d,
    )
    assert narrow.features(torch.randn(5, 40)).shape == (5, d)
    # Linear(40→W)+BN, Linear(W→W)+BN, Linear(W→d)+BN (no biases before BN), then the head
    assert count_parameters(full) == 40 * W + 2 * W + W * W + 2 * W + W * W + 2 * W + W * K
    assert count_parameters(narrow) == 40 * W + 2 * W + W * W + 2 * W + W * d + 2 * d + K
    with pytest.raises(ValueError, match="feature_dim"):
        build("mlp", (40,), K, feature_dim=0)


def test_resnet18_feature_dim_narrows_the_last_block():
    K, w = 10, 4  # a thin ResNet-18 (stages 4/8/16/32)
    full = build("resnet18", (3, 16, 16), K, width=w)
    narrow = build("resnet18", (3, 16, 16), K, width=w, feature_dim=K, head="etf", orientation="coordinate")
    assert narrow.features(torch.randn(2, 3, 16, 16)).shape == (2, K)
    c = 8 * w
    # the last block's second conv c→c (+BN) becomes c→K (+BN), plus a 1×1 shortcut c→K (+BN); the head goes
    saved = (9 * c * c + 2 * c) - (9 * c * K + 2 * K) - (c * K + 2 * K) + (c * K + K)
    assert count_parameters(full) - count_parameters(narrow) == saved


def test_training_memory_counts_parameters_gradients_momentum_and_saved_activations():
    net = build("mlp", (40,), 10, width=64, depth=2, batchnorm=False)
    x = torch.randn(8, 40)
    mem = models.training_memory(net, x)
    p = 4 * count_parameters(net)
    assert mem["parameters"] == mem["gradients"] == mem["optimizer_state"] == p
    # saved for backward: the input (first Linear) and the two ReLU outputs (the next Linear saves the same storage)
    assert mem["activations"] == 4 * (8 * 40 + 2 * 8 * 64)
    assert mem["total"] == 3 * p + mem["activations"]
    assert models.training_memory(net, x, momentum=False)["optimizer_state"] == 0


def test_training_memory_leaves_batchnorm_statistics_and_mode_alone():
    net = build("mlp", (40,), 10, width=16, depth=2, batchnorm=True).eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    models.training_memory(net, torch.randn(8, 40))
    assert not net.training
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


@pytest.mark.parametrize(
    "args, err, match",
    [
        (("net", torch.randn(4, 40)), TypeError, "model"),
        ((None, [1.0]), TypeError, "x must"),
        ((None, torch.randn(1, 40)), ValueError, "at least 2"),
    ],
)
def test_training_memory_bad_input(args, err, match):
    net = build("mlp", (40,), 10, width=16, depth=1)
    model, x = args
    with pytest.raises(err, match=match):
        models.training_memory(net if model is None else model, x)
