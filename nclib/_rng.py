"""The private random generators nclib draws from (never the global RNG): one place for how a
``seed`` argument becomes a ``torch.Generator``."""

from __future__ import annotations

import torch

__all__ = ["generator", "mixed_generator"]


def generator(seed, *, allow_generator: bool = True, allow_none: bool = False) -> torch.Generator:
    """A CPU generator seeded with the int ``seed`` (``manual_seed(seed)``); a ``torch.Generator``
    is returned as it is (``allow_generator``), ``None`` means seed 0 (``allow_none``). Anything
    else raises ``TypeError`` naming what is accepted."""
    if isinstance(seed, torch.Generator) and allow_generator:
        return seed
    if seed is None and allow_none:
        seed = 0
    if isinstance(seed, bool) or not isinstance(seed, int):
        kinds = ["an int"] + (["a torch.Generator"] if allow_generator else []) + (["None"] if allow_none else [])
        what = kinds[0] if len(kinds) == 1 else ", ".join(kinds[:-1]) + " or " + kinds[-1]
        raise TypeError(f"seed must be {what}, got {type(seed).__name__}")
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def mixed_generator(*parts: int) -> torch.Generator:
    """A CPU generator seeded by several ints (e.g. ``(seed, task, epoch)``): the seed is
    :math:`s_0 = 0,\\ s_{i+1} = (s_i\\cdot 1\\,000\\,003 + p_i) \\bmod (2^{63}-1)` over the parts
    (each converted with ``int``), so distinct tuples give distinct streams."""
    g = torch.Generator()
    s = 0
    for p in parts:
        s = (s * 1_000_003 + int(p)) % (2**63 - 1)
    g.manual_seed(s)
    return g
