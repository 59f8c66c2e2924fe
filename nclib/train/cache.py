"""The results cache: where runs are stored, atomic writes, and the fingerprint of the library
source (:func:`library_fingerprint`) that every cache key includes, so changed code never serves
a stale run."""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch

__all__ = ["library_fingerprint", "module_closure", "cache_dir", "atomic_save", "config_key", "run_dir"]


def library_fingerprint(module: str = "train") -> str:
    """What a cached result depends on besides its config: the source of the nclib modules that
    ``nclib.<module>`` imports, directly or not (found by reading their import statements,
    imports inside functions and packages included: :func:`module_closure`), the torch version,
    and the numerics of this process — ``$ATEN_CPU_CAPABILITY``, ``$MKL_ENABLE_INSTRUCTIONS`` and
    the number of torch threads, which change the float rounding. A changed library, or a run
    under other numerics, never reads a result trained by another; editing a module training does
    not import (e.g. ``ufm``, ``claims``) keeps the cached runs."""
    return (
        _source_hash(module)
        + "|"
        + json.dumps(
            {
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "aten": os.environ.get("ATEN_CPU_CAPABILITY", ""),
                "mkl": os.environ.get("MKL_ENABLE_INSTRUCTIONS", ""),
            },
            sort_keys=True,
        )
    )


_ROOT = Path(__file__).resolve().parents[1]  # the nclib package folder


def _module_files() -> dict[str, tuple[Path, bool]]:
    """``{name: (file, is_package)}`` of every nclib module, named relative to nclib with dots
    (``"train.loop"``; a package by its own name, ``"train"``; nclib's own ``__init__`` as ``"__init__"``)."""
    out = {}
    for p in sorted(_ROOT.rglob("*.py")):
        parts = list(p.relative_to(_ROOT).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts = parts[:-1]
        out[".".join(parts) or "__init__"] = (p, is_pkg)
    return out


def _imports_of(name: str, path: Path, is_pkg: bool, known) -> set[str]:
    """The nclib modules one module's import statements load — every statement, top level or inside
    a function; relative (``from . import x``, ``from ..losses import y``) or absolute (``nclib.x``)."""
    package = [] if name == "__init__" else name.split(".") if is_pkg else name.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
            elif node.module == "nclib" or (node.module or "").startswith("nclib."):
                base = []
            else:
                continue
            mod = (node.module or "").split(".") if node.level else node.module.split(".")[1:]
            target = ".".join(base + [m for m in mod if m]) or "__init__"
            if target not in known:
                raise ValueError(f"nclib.{name} imports nclib.{target}, which does not exist")
            for a in node.names:  # ``from pkg import sub`` loads the submodule; ``import attr`` the package
                sub = a.name if target == "__init__" else f"{target}.{a.name}"
                out.add(sub if sub in known else target)
        elif isinstance(node, ast.Import):
            for a in node.names:
                parts = a.name.split(".")
                if parts[0] == "nclib":
                    out.add(
                        next(
                            (".".join(parts[1:i]) for i in range(len(parts), 1, -1) if ".".join(parts[1:i]) in known),
                            "__init__",
                        )
                    )
    return out


def module_closure(module: str) -> list[str]:
    """The nclib modules that importing ``nclib.<module>`` loads, directly or not, itself included,
    sorted: the static closure of every import statement (imports inside functions included; see
    :func:`_imports_of`), plus the packages that contain a loaded module (Python runs a package's
    ``__init__`` before its submodules). Names are relative to nclib with dots: ``"train.loop"``,
    ``"train"`` for the package ``nclib/train/__init__.py``, ``"__init__"`` for nclib's own."""
    known = _module_files()
    module = module[len("nclib.") :] if module.startswith("nclib.") else module
    if module not in known:
        raise ValueError(f"no module nclib.{module}")
    seen, todo = set(), [module]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        parts = m.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) in known]
        path, is_pkg = known[m]
        todo += sorted(_imports_of(m, path, is_pkg, known))
    return sorted(seen)


@functools.cache
def _source_hash(module: str = "train") -> str:
    h = hashlib.sha256()
    known = _module_files()
    for m in module_closure(module):
        h.update(m.encode() + b"\0" + known[m][0].read_bytes() + b"\0")
    return h.hexdigest()[:16]


def config_key(payload: dict, module: str) -> str:
    """The cache key of a run of any kind: the sha256 (first 20 hex digits) of ``payload`` (what the
    config says, e.g. ``{"config": {...}}``, plus anything that tells kinds apart) together with
    :func:`library_fingerprint` of ``nclib.<module>``, the code that trains it — so a changed
    library, or other numerics, never serve a stale run."""
    blob = json.dumps({**payload, "nclib": library_fingerprint(module)}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def run_dir(kind: str, key: str, root: str | Path | None = None) -> Path:
    """The folder of one cached run: ``<root or cache_dir()>/<kind>/<key>`` (``kind``: ``"runs"`` for
    :func:`nclib.train.fit`, ``"continual"`` for ``nclib.continual``), holding ``result.pt`` (and a
    checkpoint while training)."""
    return Path(root or cache_dir()) / kind / key


def cache_dir() -> Path:
    """``$NCLIB_CACHE`` or ``~/.cache/nclib`` — shared by the book build and the tests."""
    return Path(os.environ.get("NCLIB_CACHE", Path.home() / ".cache" / "nclib"))


def atomic_save(obj, path) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename: never a torn file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
