"""The architecture CONTRIBUTING.md describes, checked statically: nclib's import graph has no
cycle (imports inside functions count: they only hide a circle until the function runs) and no
module file is longer than ``MAX_LINES``."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "nclib"
MAX_LINES = 800


def _modules() -> dict[str, tuple[Path, bool]]:
    """``{dotted name: (file, is_package)}`` of every nclib module."""
    out = {}
    for p in sorted(ROOT.rglob("*.py")):
        rel = p.relative_to(ROOT.parent).with_suffix("")
        parts = list(rel.parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts = parts[:-1]
        out[".".join(parts)] = (p, is_pkg)
    return out


def _targets(name: str, is_pkg: bool, node, known) -> list[str]:
    """The nclib modules an import statement of module ``name`` loads (relative or absolute)."""
    if isinstance(node, ast.Import):
        hits = []
        for a in node.names:
            if a.name == "nclib" or a.name.startswith("nclib."):
                parts = a.name.split(".")
                hits.append(next(".".join(parts[:i]) for i in range(len(parts), 0, -1) if ".".join(parts[:i]) in known))
        return hits
    if node.level:
        base = name.split(".") if is_pkg else name.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + (node.module.split(".") if node.module else []))
    elif node.module and (node.module == "nclib" or node.module.startswith("nclib.")):
        target = node.module
    else:
        return []
    assert target in known, f"{name} imports {target}, which is not an nclib module"
    # ``from pkg import sub`` loads the submodule; ``from pkg import attr`` the package itself
    return [f"{target}.{a.name}" if f"{target}.{a.name}" in known else target for a in node.names]


def import_graph() -> dict[str, set[str]]:
    """``{module: modules it imports}``, every import statement of the file included (top level,
    inside functions and classes, under ``if``/``try``). A submodule's implicit import of its
    parent package is not an edge."""
    known = _modules()
    graph = {}
    for name, (path, is_pkg) in known.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                deps.update(_targets(name, is_pkg, node, known))
        deps.discard(name)
        graph[name] = deps
    return graph


def _find_cycle(graph):
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == "open":
                return stack[stack.index(d) :] + [d]
            if d not in state:
                found = visit(d)
                if found:
                    return found
        stack.pop()
        state[m] = "done"
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_import_graph_is_acyclic():
    cycle = _find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " → ".join(cycle)


def test_the_graph_sees_imports_inside_functions_and_packages():
    g = import_graph()
    assert "nclib.losses" in g["nclib.imbalance"]  # top level
    assert "nclib.train" in g["nclib.imbalance"]  # inside long_tail_recipe
    assert "nclib.models" in g["nclib.train.loop"]  # a package's submodule, relative import
    assert "nclib.evaluation" in g["nclib.train.loop"]  # ``from ..evaluation import`` inside a function
    assert "nclib.train.config" in g["nclib.train"]  # a package re-exporting its parts
    assert "nclib" in g["nclib.train.loop"]  # ``from .. import __version__``
    assert "nclib" in g["nclib.profiles"]  # ``from . import __version__``


def test_the_cycle_finder_finds_cycles():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_core_modules_know_nothing_of_the_chapters():
    g = import_graph()
    chapters = {
        "nclib.generalization",
        "nclib.transfer",
        "nclib.imbalance",
        "nclib.continual",
        "nclib.evaluation",
        "nclib.claims",
        "nclib.plots",
    } | {m for m in g if m.startswith("nclib.ufm")}
    for core in ("nclib.metrics", "nclib.geometry", "nclib.losses", "nclib.data", "nclib.models"):
        assert not (g[core] & chapters), f"{core} imports {sorted(g[core] & chapters)}"
    for m in g:
        if m.startswith("nclib.train"):
            assert not (g[m] & chapters - {"nclib.evaluation"}), f"{m} imports {sorted(g[m] & chapters)}"


@pytest.mark.parametrize("path", sorted(ROOT.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_is_too_long(path):
    n = len(path.read_text().splitlines())
    rel = str(path.relative_to(ROOT))
    assert n <= MAX_LINES, f"{rel} has {n} lines (limit {MAX_LINES}): split it by topic"


def test_the_cache_fingerprint_reads_the_same_graph():
    """``nclib.train.module_closure`` (what a cached run's key hashes) covers everything this
    graph says a module reaches."""
    from nclib.train import module_closure

    g = import_graph()

    def reach(m):
        seen, todo = set(), [m]
        while todo:
            x = todo.pop()
            if x not in seen:
                seen.add(x)
                todo += g[x]
        return seen

    short = lambda m: m[len("nclib.") :] if m != "nclib" else "__init__"  # noqa: E731
    for m in ("nclib.train", "nclib.train.loop", "nclib.continual", "nclib.imbalance", "nclib.ufm"):
        assert {short(x) for x in reach(m)} <= set(module_closure(short(m))), m


# modules another change owns that still carry their own copy (remove once they use the shared one)
OWN_GENERATOR_PENDING: set = set()


def test_one_definition_each():
    """One rank correlation, one terminal-phase onset, one seed → generator rule, one feature
    extractor; the other names are the same objects or thin wrappers of them."""
    from nclib import continual, features, generalization, stats, train, transfer

    assert transfer.spearman is stats.spearman and generalization.rank_correlation is stats.spearman
    assert generalization.stays_zero_from is train.stays_zero_from
    assert continual._generator is __import__("nclib._rng", fromlist=["x"]).mixed_generator
    assert features.extract.__module__ == "nclib.features"
    own = sorted(
        str(p.relative_to(ROOT))
        for p in ROOT.rglob("*.py")
        if any(isinstance(n, ast.FunctionDef) and n.name == "_generator" for n in ast.walk(ast.parse(p.read_text())))
    )
    assert set(own) == OWN_GENERATOR_PENDING, own
