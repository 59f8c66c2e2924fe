"""Argument checks shared by every public function of nclib (private module).

Each check either returns the value in a canonical form (``int``, ``float``, the tensor itself) or
raises a ``TypeError`` (wrong kind of object) or ``ValueError`` (right kind, bad value) whose
message starts with the argument's name, so that a caller sees which argument to fix instead of an
error from deep inside torch.

Conventions, the same everywhere:

* integers: Python ``int`` or numpy integer; ``bool`` is refused (``True`` is not a count);
* reals: any ``numbers.Real`` (numpy floats included) except ``bool``; strings are refused, never
  parsed; NaN is refused; infinity is refused unless ``finite=False``;
* tensors: a ``torch.Tensor`` (numpy arrays are refused with a hint); floating-point tensors are
  checked for NaN/inf unless ``finite=False``;
* labels: a 1-D integer tensor (not bool, not float) with values in ``0..K-1``.

This module imports only torch and the standard library, so every module may use it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable

import torch
from torch import Tensor

__all__ = []  # private: nothing here is part of the public API


def _kind(v) -> str:
    return type(v).__name__


def integer(v, name: str, *, lo: int | None = None, hi: int | None = None) -> int:
    """``v`` as an ``int`` in ``[lo, hi]`` (bounds optional, inclusive)."""
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {_kind(v)} {v!r}")
    v = int(v)
    if lo is not None and v < lo:
        raise ValueError(f"{name} must be ≥ {lo}, got {v}")
    if hi is not None and v > hi:
        raise ValueError(f"{name} must be ≤ {hi}, got {v}")
    return v


def real(
    v,
    name: str,
    *,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    hi_open: bool = False,
    finite: bool = True,
) -> float:
    """``v`` as a ``float`` in the interval given by ``lo``/``hi`` (closed unless ``*_open``)."""
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {_kind(v)} {v!r}")
    v = float(v)
    if math.isnan(v):
        raise ValueError(f"{name} must be a number, got NaN")
    if finite and math.isinf(v):
        raise ValueError(f"{name} must be finite, got {v}")
    if lo is not None and (v <= lo if lo_open else v < lo):
        raise ValueError(f"{name} must be {'>' if lo_open else '≥'} {lo}, got {v}")
    if hi is not None and (v >= hi if hi_open else v > hi):
        raise ValueError(f"{name} must be {'<' if hi_open else '≤'} {hi}, got {v}")
    return v


def positive(v, name: str) -> float:
    """A finite real ``> 0``."""
    return real(v, name, lo=0.0, lo_open=True)


def nonnegative(v, name: str) -> float:
    """A finite real ``≥ 0``."""
    return real(v, name, lo=0.0)


def fraction(v, name: str) -> float:
    """A real in ``[0, 1]``."""
    return real(v, name, lo=0.0, hi=1.0)


def choice(v, name: str, choices: Iterable) -> None:
    """``v`` is one of ``choices`` (compared with ``==``; unhashable values are refused)."""
    choices = tuple(choices)
    try:
        ok = v in choices
    except TypeError:
        ok = False
    if not ok:
        raise ValueError(f"{name} must be one of {choices}, got {v!r}")


def boolean(v, name: str) -> bool:
    """A real ``bool`` (``0``/``1``/strings are refused: ``"False"`` is true in Python)."""
    if not isinstance(v, bool):
        raise TypeError(f"{name} must be True or False, got {_kind(v)} {v!r}")
    return v


def tensor(
    x,
    name: str,
    *,
    ndim: int | None = None,
    floating: bool | None = None,
    finite: bool = True,
    shape: tuple | None = None,
    nonempty: bool = False,
) -> Tensor:
    """``x`` is a tensor of the given rank/shape (``None`` in ``shape`` matches any size).

    ``floating=True`` requires a floating-point dtype, ``False`` an integer one (bool refused).
    A floating tensor with NaN/inf is refused unless ``finite=False``."""
    if not isinstance(x, Tensor):
        hint = " (convert with torch.as_tensor)" if type(x).__module__.startswith("numpy") else ""
        raise TypeError(f"{name} must be a torch.Tensor, got {_kind(x)}{hint}")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {tuple(x.shape)}")
    if shape is not None and (x.ndim != len(shape) or any(s is not None and s != t for s, t in zip(shape, x.shape))):
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{name} must have shape {want}, got {tuple(x.shape)}")
    if floating is True and not x.dtype.is_floating_point:
        raise TypeError(f"{name} must be floating point, got {x.dtype}")
    if floating is False and (x.dtype.is_floating_point or x.dtype == torch.bool or x.is_complex()):
        raise TypeError(f"{name} must be an integer tensor, got {x.dtype}")
    if nonempty and x.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)})")
    if finite and x.dtype.is_floating_point and x.numel() and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or inf")
    return x


def labels(
    y, name: str = "labels", *, n: int | None = None, num_classes: int | None = None, what: str = "features"
) -> Tensor:
    """A 1-D integer label tensor, with ``n`` entries (one per row of ``what``) in ``0..num_classes-1``."""
    y = tensor(y, name, floating=False)
    if y.ndim != 1 or (n is not None and y.shape[0] != n):
        rows = f" for {n} rows of {what}" if n is not None else ""
        raise ValueError(f"{name} must be 1-D with one label per row of {what}: got shape {tuple(y.shape)}{rows}")
    if num_classes is not None and y.numel():
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= num_classes:
            raise ValueError(f"{name} out of range: found [{lo}, {hi}], expected 0..{num_classes - 1}")
    return y
