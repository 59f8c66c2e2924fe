"""nclib.data's torchvision loaders on tiny fixtures written in torchvision's real on-disk formats
(MNIST/FashionMNIST: raw IDX files; CIFAR-10: the python-pickle batches). No network, ever:
every load passes download=False and a tmp root."""

import pickle
import struct

import numpy as np
import pytest
import torch

pytest.importorskip("torchvision")

import torchvision.datasets.cifar  # noqa: E402

from nclib import data  # noqa: E402
from nclib.train import TrainConfig, fit  # noqa: E402

N_TRAIN, N_TEST = 30, 12  # 10 classes: every class is present in both splits


def _labels(n, offset):
    return ((np.arange(n) + offset) % 10).astype(np.uint8)


def _write_idx(path, arr: np.ndarray):
    """IDX format: magic 0x0000 08 <ndim> (uint8 data), big-endian int32 dims, then the bytes."""
    assert arr.dtype == np.uint8
    with open(path, "wb") as f:
        f.write(struct.pack(">I", 0x0800 | arr.ndim))
        f.write(struct.pack(f">{arr.ndim}I", *arr.shape))
        f.write(arr.tobytes())


def write_mnist_like(root, folder, seed):
    """root/<folder>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte (unzipped, as torchvision keeps them)."""
    rng = np.random.default_rng(seed)
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    out = {}
    for split, n, prefix in (("train", N_TRAIN, "train"), ("test", N_TEST, "t10k")):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = _labels(n, 3 if split == "test" else 0)
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
        out[split] = (images, labels)
    return out


def write_cifar10(root, seed):
    """root/cifar-10-batches-py/data_batch_1..5, test_batch, batches.meta (latin-1 pickles)."""
    rng = np.random.default_rng(seed)
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    per_batch = N_TRAIN // 5
    train_x, train_y = [], []
    for i in range(1, 6):
        x = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        y = [int(v) for v in _labels(per_batch, i)]
        with open(base / f"data_batch_{i}", "wb") as f:
            pickle.dump(
                {
                    "batch_label": f"training batch {i} of 5",
                    "data": x,
                    "labels": y,
                    "filenames": [f"img{i}_{j}.png" for j in range(per_batch)],
                },
                f,
            )
        train_x.append(x)
        train_y += y
    tx = rng.integers(0, 256, size=(N_TEST, 3072), dtype=np.uint8)
    ty = [int(v) for v in _labels(N_TEST, 7)]
    with open(base / "test_batch", "wb") as f:
        pickle.dump({"batch_label": "testing batch 1 of 1", "data": tx, "labels": ty}, f)
    with open(base / "batches.meta", "wb") as f:
        pickle.dump(
            {
                "label_names": [
                    "airplane",
                    "automobile",
                    "bird",
                    "cat",
                    "deer",
                    "dog",
                    "frog",
                    "horse",
                    "ship",
                    "truck",
                ],
                "num_cases_per_batch": per_batch,
                "num_vis": 3072,
            },
            f,
        )
    return {"train": (np.concatenate(train_x), np.array(train_y, dtype=np.uint8)), "test": (tx, np.array(ty))}


@pytest.fixture
def cifar_md5_exists_only(monkeypatch):
    # torchvision's CIFAR10 verifies the md5 sums of the real files, which a fixture cannot match:
    # the integrity check is reduced to "the file exists". Reading the pickles, reshaping to HWC,
    # PIL conversion and the transforms all stay torchvision's real code path.
    import os

    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))


@pytest.fixture
def mnist_root(tmp_path):
    return tmp_path, write_mnist_like(tmp_path, "MNIST", seed=0)


def _normalised(images_chw_uint8: np.ndarray, mean, std) -> torch.Tensor:
    x = torch.from_numpy(images_chw_uint8.astype(np.float32) / 255.0)
    m = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
    return (x - m) / s


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_mnist_like_loaders(tmp_path, name, folder):
    raw = write_mnist_like(tmp_path, folder, seed=1)
    d = data.load(name, root=str(tmp_path), download=False)
    assert isinstance(d, data.Data) and d.name == name
    assert d.num_classes == 10 and d.input_shape == (1, 28, 28)
    assert len(d.train) == N_TRAIN and len(d.test) == N_TEST
    _, _, _, mean, std = data.TORCHVISION_SETS[name]
    for split in ("train", "test"):
        X, y = d.tensors(split)
        images, labels = raw[split]
        assert X.shape == (len(labels), 1, 28, 28) and X.dtype == torch.float32
        assert y.dtype == torch.long and torch.equal(y, torch.from_numpy(labels.astype(np.int64)))
        want = _normalised(images[:, None], mean, std)
        assert torch.allclose(X, want, atol=1e-5)
    assert d.info["root"] == str(tmp_path)


def test_cifar10_loader(tmp_path, cifar_md5_exists_only):
    raw = write_cifar10(tmp_path, seed=2)
    d = data.load("cifar10", root=str(tmp_path), download=False)
    assert d.num_classes == 10 and d.input_shape == (3, 32, 32)
    assert len(d.train) == N_TRAIN and len(d.test) == N_TEST
    _, _, _, mean, std = data.TORCHVISION_SETS["cifar10"]
    for split in ("train", "test"):
        X, y = d.tensors(split)
        rows, labels = raw[split]
        assert X.shape == (len(labels), 3, 32, 32) and X.dtype == torch.float32
        assert torch.equal(y, torch.as_tensor(labels, dtype=torch.long))
        # a CIFAR row is channel-major (1024 R, 1024 G, 1024 B values)
        want = _normalised(rows.reshape(-1, 3, 32, 32), mean, std)
        assert torch.allclose(X, want, atol=1e-5)
    # normalisation really happened: far outside [0, 1]
    assert float(X.min()) < -1.5 and float(X.max()) > 1.5


def test_seeded_subsets(mnist_root):
    root, raw = mnist_root
    a = data.load("mnist", root=str(root), n_train=10, n_test=5, seed=4)
    b = data.load("mnist", root=str(root), n_train=10, n_test=5, seed=4)
    c = data.load("mnist", root=str(root), n_train=10, n_test=5, seed=5)
    full = data.load("mnist", root=str(root))
    assert len(a.train) == 10 and len(a.test) == 5
    Xa, ya = a.tensors("train")
    assert torch.equal(Xa, b.tensors("train")[0]) and torch.equal(ya, b.tensors("train")[1])
    assert not torch.equal(Xa, c.tensors("train")[0])
    # a subset is a seeded choice of distinct samples of the full set, with their own labels
    Xf, yf = full.tensors("train")
    idx = [int(torch.nonzero((Xf == x).all(dim=(1, 2, 3)))[0]) for x in Xa]
    assert len(set(idx)) == 10
    assert torch.equal(ya, yf[idx])
    g = torch.Generator().manual_seed(4)
    assert idx == torch.randperm(N_TRAIN, generator=g)[:10].tolist()


def test_classes_subsetting(mnist_root):
    root, raw = mnist_root
    d = data.load("mnist", root=str(root), classes=[7, 3])
    assert d.num_classes == 2 and d.input_shape == (1, 28, 28)
    for split in ("train", "test"):
        X, y = d.tensors(split)
        labels = raw[split][1]
        keep = np.isin(labels, [7, 3])
        assert len(y) == keep.sum()
        assert torch.equal(y, torch.from_numpy(np.where(labels[keep] == 7, 0, 1)))
        assert torch.allclose(X, _normalised(raw[split][0][keep][:, None], (0.1307,), (0.3081,)), atol=1e-5)


def test_classes_subsetting_cifar10(tmp_path, cifar_md5_exists_only):
    raw = write_cifar10(tmp_path, seed=3)
    d = data.load("cifar10", root=str(tmp_path), classes=[0, 9, 4])
    assert d.num_classes == 3
    y = d.tensors("train")[1]
    labels = raw["train"][1]
    keep = np.isin(labels, [0, 9, 4])
    lut = {0: 0, 9: 1, 4: 2}
    assert y.tolist() == [lut[int(v)] for v in labels[keep]]


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10"])
def test_missing_root_raises_file_not_found(tmp_path, name):
    root = tmp_path / "nothing-here"
    with pytest.raises(FileNotFoundError) as e:
        data.load(name, root=str(root), download=False)
    assert str(root) in str(e.value)


def test_corrupt_cifar_raises_file_not_found(tmp_path):
    """Without the md5 shortcut, the fixture is 'corrupted' for torchvision: a clear FileNotFoundError."""
    write_cifar10(tmp_path, seed=0)
    with pytest.raises(FileNotFoundError, match="CIFAR10"):
        data.load("cifar10", root=str(tmp_path), download=False)


def test_unknown_torchvision_set(tmp_path):
    with pytest.raises(ValueError, match="unknown torchvision set"):
        data.torchvision_set("svhn", root=str(tmp_path))


def test_fit_one_epoch_on_the_mnist_fixture(mnist_root):
    root, _ = mnist_root
    cfg = TrainConfig(
        data="mnist",
        data_kwargs=dict(root=str(root), download=False),
        model="mlp",
        model_kwargs=dict(width=16, depth=1, batchnorm=False),
        epochs=1,
        batch_size=16,
        n_logs=1,
    )
    run = fit(cfg, root=root / "cache", progress=False)
    assert run.history["epoch"].tolist() == [0, 1]
    assert run.model.body[0].in_features == 28 * 28  # the MLP flattens the images
    assert np.isfinite(run.history[["nc1", "equiangularity", "self_duality", "train_loss"]].iloc[1]).all()
    F, y = run.features("train")
    assert F.shape == (N_TRAIN, 16) and F.dtype == torch.float64 and len(y) == N_TRAIN
    # the cache works for a torchvision-backed run too
    again = fit(cfg, root=root / "cache", progress=False)
    assert again.from_cache
    assert all(torch.equal(a, b) for a, b in zip(run.model.state_dict().values(), again.model.state_dict().values()))
