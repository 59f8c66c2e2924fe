"""The one optimisation loop: periods (epochs, task × epoch, steps) of batches, an objective that
turns a batch into a loss, and callbacks that log, evaluate, checkpoint or stop between them.

:func:`run_loop` is used by :func:`nclib.train.fit` (epochs of shuffled mini-batches, NC logging,
checkpoints), ``nclib.continual.train_class_incremental`` (a task schedule: task × epoch periods,
replay batches, evaluation at the end of each task) and ``nclib.ufm.train_regression_mlp``
(full-batch steps, NRC logging). Per batch it does exactly: ``loss, out = objective.forward(batch)``,
``opt.zero_grad(set_to_none=True)``, ``objective.backward(loss, batch)``, ``opt.step()``, then
every callback's ``batch_end``; it draws no random numbers itself, so a caller's results depend
only on the batches it yields.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

__all__ = ["Objective", "Callback", "run_loop"]


class Objective:
    """What is optimised: ``forward(batch) -> (loss, output)`` and ``backward(loss, batch)``
    (default ``loss.backward()``)."""

    def forward(self, batch):  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, loss: torch.Tensor, batch) -> None:
        loss.backward()


class Callback:
    """Hooks of :func:`run_loop`; each does nothing unless overridden. ``period_end`` returning
    True stops the loop after that period (every callback's ``period_end`` still runs)."""

    def period_start(self, period) -> None:
        pass

    def batch_end(self, batch, loss: torch.Tensor, output) -> None:
        pass

    def period_end(self, period) -> bool | None:
        return None


def run_loop(
    opt: torch.optim.Optimizer,
    periods: Iterable,
    batches: Callable[[object], Iterable],
    objective: Objective,
    callbacks: Iterable[Callback] = (),
) -> bool:
    """For each period: the callbacks' ``period_start``, then for each batch of ``batches(period)``
    one optimiser step on ``objective``, then the callbacks' ``period_end`` (in the order given).
    Returns False when a callback stopped the loop, True when every period ran."""
    callbacks = list(callbacks)
    for period in periods:
        for cb in callbacks:
            cb.period_start(period)
        for batch in batches(period):
            loss, out = objective.forward(batch)
            opt.zero_grad(set_to_none=True)
            objective.backward(loss, batch)
            opt.step()
            for cb in callbacks:
                cb.batch_end(batch, loss, out)
        if any([bool(cb.period_end(period)) for cb in callbacks]):
            return False
    return True
