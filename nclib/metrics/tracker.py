"""NC metrics tracked during training from the forward passes it already makes."""

from __future__ import annotations

import torch
from torch import Tensor

from ._core import _GLOBAL_MEANS, _PRECISIONS, _check_choice, _require_tensor
from .streaming import NCMetrics, _classifier_of, _two_pass


# ----------------------------------------------------------------------------- tracking during training
class TrainingTracker:
    r"""NC metrics of the training set at every epoch, from the forward passes training already
    makes — **an approximation** of :func:`measure` on the training split.

    A forward hook on the classifier module (``module``, e.g. ``model.classifier``) copies the
    classifier's input — the penultimate features — of every batch run while the module is in
    training mode into one growing buffer (evaluation-mode calls, e.g. :func:`measure`'s, are
    ignored); the training loop hands over each batch's labels with :meth:`labels` (before or
    after the forward pass; features and labels are paired in order). :meth:`compute` then runs the
    two-pass computation of :func:`measure_features` on the kept features, with the classifier as
    it is at that moment, and starts a new epoch.

    What differs from the exact, end-of-epoch, evaluation-mode :func:`measure`:

    1. the features are the training-mode ones (BatchNorm with batch statistics, dropout active);
    2. each batch's features come from the weights at that step of the epoch, not the final ones;
    3. NC4 (and the accuracy) take the network's decision from the training logits of each batch
       (the hook's output: the classifier at that step, training-mode features), so no logits are
       recomputed; NC3 and the other classifier metrics use (W, b) as at :meth:`compute` time
       (call it when the epoch is done, before the next optimiser step);
    4. ``precision="float32"`` by default (pass 2's products in float32, error ≤ 1e-5 on the
       benchmark cases — far below the deviations 1–3; NC4's decisions stay certified);
       ``precision="float64"`` makes the computation on the kept features exact.

    Its deviation from the exact measurement is measured per epoch in ``benchmarks/bench.py``
    (section 2). Cost: a copy of each batch's features (the training set's features once per
    epoch, kept until :meth:`compute`, in their dtype) plus one :func:`measure_features` on them;
    no extra forward pass. Under ``torch.distributed`` every rank keeps its shard and
    :meth:`compute` (called on every rank) all-reduces the statistics.

    In a training loop (e.g. as a callback of ``nclib.train``'s loop: the tracker made from
    ``model.classifier`` at the start, ``labels(batch_labels)`` at each batch end, ``compute()``
    at each epoch end after the running curve's row is written, ``remove()`` when training ends)::

        tracker = TrainingTracker(model.classifier, K)
        for epoch in ...:
            for xb, yb in batches:
                loss = criterion(model(xb), yb); ...; tracker.labels(yb)
            row = tracker.compute().metrics          # this epoch's approximate training-set metrics
        tracker.remove()
    """

    def __init__(
        self,
        module: torch.nn.Module,
        num_classes: int,
        *,
        classifier=None,
        global_mean: str = "samples",
        unbiased: bool = True,
        precision: str = "float32",
    ):
        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"module must be a torch.nn.Module (the classifier), got {type(module).__name__}")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int):
            raise TypeError(f"num_classes must be an int, got {type(num_classes).__name__}")
        if num_classes < 2:
            raise ValueError(f"need at least 2 classes, got num_classes={num_classes}")
        _check_choice(global_mean, "global_mean", _GLOBAL_MEANS)
        _check_choice(precision, "precision", _PRECISIONS)
        self.module, self.num_classes = module, num_classes
        self.classifier = module if classifier is None else classifier
        self.conventions = dict(global_mean=global_mean, unbiased=bool(unbiased), precision=precision)
        self._buf: Tensor | None = None  # rows 0.._rows−1: the features seen since the last compute()
        self._rows = 0
        self._sizes: list[int] = []  # rows per forward pass, in order
        self._labels: list[Tensor] = []
        self._preds: list[Tensor | None] = []  # the argmax of each batch's training logits
        self._handle = module.register_forward_hook(self._hook)

    def _hook(self, mod, inp, out) -> None:
        if not (mod.training and inp and isinstance(inp[0], Tensor)):
            return
        f = inp[0].detach().flatten(1)
        n = f.shape[0]
        buf = self._buf
        if (
            buf is None
            or buf.shape[1] != f.shape[1]
            or buf.dtype != f.dtype
            or buf.device != f.device
            or buf.shape[0] < self._rows + n
        ):
            grown = torch.empty(max(2 * (self._rows + n), 1024), f.shape[1], dtype=f.dtype, device=f.device)
            if buf is not None and self._rows:
                if buf.shape[1] != f.shape[1]:
                    raise ValueError(f"the classifier's input changed width from {buf.shape[1]} to {f.shape[1]}")
                grown[: self._rows].copy_(buf[: self._rows])
            self._buf = buf = grown
        buf[self._rows : self._rows + n].copy_(f)
        self._rows += n
        self._sizes.append(n)
        logits = out[0] if isinstance(out, (tuple, list)) else out
        ok = isinstance(logits, Tensor) and logits.ndim == 2 and logits.shape == (n, self.num_classes)
        self._preds.append(logits.detach().argmax(1) if ok else None)

    def labels(self, y: Tensor) -> None:
        """The labels of the batch whose forward pass is (or is about to be) run."""
        y = _require_tensor(y, "y")
        if y.ndim != 1:
            raise ValueError(f"labels must be 1-D, got shape {tuple(y.shape)}")
        self._labels.append(y.detach())

    @property
    def pending(self) -> int:
        """Feature rows kept for the current epoch (paired with labels)."""
        return sum(self._sizes[: len(self._labels)])

    def compute(self, W: Tensor | None = None, b: Tensor | None = None) -> NCMetrics:
        """Metrics of the features kept since the last call, with the classifier's current (W, b)
        unless given; then forgets them. Unpaired features or labels (a batch whose forward pass
        or labels come later) stay for the next epoch."""
        n = min(len(self._sizes), len(self._labels))
        if n == 0:
            raise ValueError(
                "no training batches were seen since the last compute(): call labels(y) "
                "for each batch and run its forward pass in training mode"
            )
        for size, y in zip(self._sizes[:n], self._labels[:n]):
            if size != y.shape[0]:
                raise ValueError(
                    f"a batch has {size} feature rows but {y.shape[0]} labels: "
                    "labels(y) must be called once per training forward pass"
                )
        rows = sum(self._sizes[:n])
        feats = self._buf[:rows]
        labels = torch.cat([y.to(feats.device) for y in self._labels[:n]])
        if W is None:
            W, b0 = _classifier_of(None, self.classifier)
            b = b0 if b is None else b
        if W is not None:
            W = W.detach()
            b = None if b is None else b.detach()
        item = (feats, labels)
        if all(p is not None for p in self._preds[:n]):
            item = (feats, labels, torch.cat([p.to(feats.device) for p in self._preds[:n]]))
        try:
            return _two_pass(
                lambda: iter([item]), self.num_classes, W, b, route="auto", device=feats.device, **self.conventions
            )
        finally:
            rest = self._rows - rows  # features of a forward pass whose labels come later
            if rest:
                self._buf[:rest].copy_(self._buf[rows : self._rows].clone())
            self._rows = rest
            self._sizes, self._labels, self._preds = self._sizes[n:], self._labels[n:], self._preds[n:]

    def remove(self) -> None:
        """Remove the forward hook."""
        self._handle.remove()

    def __enter__(self) -> TrainingTracker:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()
