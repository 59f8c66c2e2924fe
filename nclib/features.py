"""Feature extraction, one way for every module: the penultimate features ``model.features(x)``,
or the input or the output of a named submodule captured by a forward hook.

* :class:`FeatureTap` — a context manager that, per batch, returns the features of a batch
  (raw: the tensor as the model computed it, on its device, in its dtype); for streaming
  consumers (``metrics.measure`` accumulates statistics batch by batch);
* :func:`extract` — the features of a whole input tensor, batched, as float64 on the CPU (N×D).

A named layer needs an explicit ``where="input"`` (what the submodule receives — e.g. the
classifier's input is the penultimate feature) or ``where="output"`` (what it returns — e.g. a
hidden ReLU's activations); nothing guesses. ``through="features"`` runs ``model.features(x)``
(the submodule must be part of the feature map), ``through="forward"`` runs ``model(x)`` (the
classifier too, so its input can be tapped). Models run in eval mode; the mode is restored.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["FeatureTap", "extract", "WHERE", "THROUGH"]

WHERE = ("input", "output")
THROUGH = ("features", "forward")


class FeatureTap:
    """``with FeatureTap(model, layer, where=..., through=...) as tap: h = tap(xb)``.

    ``layer=None``: ``tap(xb)`` is ``model.features(xb)`` (``where``/``through`` unused).
    ``layer="name"``: ``tap(xb)`` runs the model (``through``) and returns the ``where`` of the
    submodule of that name in the last call of it during that pass (``ValueError`` if it never
    ran). Gradients are not tracked; the model is put in eval mode on entry and restored on exit.
    """

    def __init__(
        self, model: nn.Module, layer: str | None = None, *, where: str | None = None, through: str = "features"
    ):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if through not in THROUGH:
            raise ValueError(f"through must be one of {THROUGH}, got {through!r}")
        if (layer is None or through == "features") and not callable(getattr(model, "features", None)):
            raise TypeError("model must have a features(x) method (an nclib.models.NCModel)")
        if layer is not None:
            modules = dict(model.named_modules())
            if not isinstance(layer, str) or layer not in modules or layer == "":
                raise ValueError(f"model has no submodule {layer!r}; available: {[k for k in modules if k][:30]}")
            if where not in WHERE:
                raise ValueError(f"a named layer needs where='input' or where='output', got {where!r}")
        self.model, self.layer, self.where, self.through = model, layer, where, through
        self._captured: list[Tensor] = []
        self._hook = None
        self._was = None

    def __enter__(self) -> FeatureTap:
        if self.layer is not None:
            target = dict(self.model.named_modules())[self.layer]
            self._hook = target.register_forward_hook(
                lambda m, i, o: self._captured.append((i[0] if self.where == "input" else o).detach())
            )
        self._was = self.model.training
        self.model.eval()
        return self

    def __exit__(self, *exc) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        self.model.train(self._was)

    @torch.no_grad()
    def __call__(self, xb: Tensor) -> Tensor:
        if self.layer is None:
            return self.model.features(xb)
        self._captured.clear()
        if self.through == "features":
            self.model.features(xb)
        else:
            self.model(xb)
        if not self._captured:
            used = "model.features" if self.through == "features" else "the model's forward"
            raise ValueError(f"submodule {self.layer!r} is not used by {used}")
        return self._captured[-1]


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def extract(
    model: nn.Module,
    X: Tensor,
    layer: str | None = None,
    *,
    where: str | None = None,
    through: str = "features",
    pool: str = "mean",
    batch_size: int = 4096,
) -> Tensor:
    """The features of ``model`` on inputs ``X`` (N×…), batched by ``batch_size``, as float64 on
    the CPU: ``model.features(x)`` (``layer=None``) or the ``where`` of submodule ``layer``
    (:class:`FeatureTap`). A tapped tensor with spatial dimensions (N×C×…) is averaged over them
    (``pool="mean"``, global average pooling) or flattened (``pool="flatten"``); a 2-D one is kept.
    Each batch is moved to the model's device, and its features to float64 on the CPU. An
    empty X gives a 0×0 tensor."""
    if not isinstance(X, Tensor):
        raise TypeError(f"X must be a torch.Tensor, got {type(X).__name__}")
    if pool not in ("mean", "flatten"):
        raise ValueError(f"pool must be 'mean' or 'flatten', got {pool!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    out = []
    with FeatureTap(model, layer, where=where, through=through) as tap:
        dev = _device_of(model)
        for s in range(0, len(X), batch_size):
            h = tap(X[s : s + batch_size].to(dev))
            if layer is not None:
                h = h.flatten(2).mean(2) if (h.ndim > 2 and pool == "mean") else h.flatten(1)
            out.append(h.double().cpu())
    return torch.cat(out) if out else torch.zeros(0, 0, dtype=torch.float64)
