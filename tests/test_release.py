"""The release a user installs: `python -m build` makes a wheel and an sdist whose metadata passes
`twine check --strict`; both carry the one version (`nclib.__version__`), the licence and the
calibration table; CHANGELOG.md has a section for that version; LICENSE and CITATION.cff exist.

The build runs on a copy of the repository's files (tracked and untracked, not ignored) without
build isolation, so it needs no network and leaves nothing in the working tree.
"""

import ast
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def version() -> str:
    """`__version__` read from nclib/__init__.py without importing the package."""
    tree = ast.parse((ROOT / "nclib" / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__version__" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError("no __version__ in nclib/__init__.py")


def test_the_version_lives_in_one_place():
    v = version()
    assert re.fullmatch(r"\d+\.\d+\.\d+(?:[ab]\d+|rc\d+|\.post\d+|\.dev\d+)?", v), v
    py = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in py and 'version = { attr = "nclib.__version__" }' in py
    import tomllib

    assert "version" not in tomllib.loads(py)["project"], "pyproject.toml must not repeat the version"
    assert not re.search(r"^version:", (ROOT / "CITATION.cff").read_text(), re.M), (
        "CITATION.cff must not repeat the version (or this test must compare it)"
    )


def test_changelog_records_the_version():
    text = (ROOT / "CHANGELOG.md").read_text()
    sections = re.findall(r"^## \[([^\]]+)\](?: - (\d{4}-\d{2}-\d{2}))?", text, re.M)
    names = [s[0] for s in sections]
    assert version() in names, f"CHANGELOG.md has no section for {version()}: {names}"
    assert all(date for name, date in sections if name != "Unreleased"), "every released section is dated"


def test_licence_and_citation_files():
    lic = (ROOT / "LICENSE").read_text()
    assert lic.startswith("MIT License")
    assert "CC BY 4.0" in lic or "Creative Commons Attribution 4.0" in lic, "LICENSE names the prose's licence"
    cff = (ROOT / "CITATION.cff").read_text()
    for key in ("cff-version:", "title:", "authors:", "license:", "repository-code:"):
        assert key in cff, key


def _copy_sources(dst: Path):
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, text=True
    )
    if files.returncode != 0:
        pytest.skip("not a git checkout: cannot tell the sources from the build outputs")
    for rel in filter(None, files.stdout.split("\0")):
        src = ROOT / rel
        if src.is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    pytest.importorskip("build")
    pytest.importorskip("twine")
    src = tmp_path_factory.mktemp("src")
    out = tmp_path_factory.mktemp("dist")
    _copy_sources(src)
    r = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(src)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, f"python -m build failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return out


def test_build_makes_a_wheel_and_an_sdist_that_pass_twine_check(dist):
    v = version()
    wheels, sdists = sorted(dist.glob("*.whl")), sorted(dist.glob("*.tar.gz"))
    assert [w.name for w in wheels] == [f"neural_collapse_book-{v}-py3-none-any.whl"]
    assert [s.name for s in sdists] == [f"neural_collapse_book-{v}.tar.gz"]
    r = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *map(str, wheels + sdists)], capture_output=True, text=True
    )
    assert r.returncode == 0 and r.stdout.count("PASSED") == 2, r.stdout + r.stderr


def test_the_wheel_carries_the_package_the_version_and_the_licence(dist):
    v = version()
    with zipfile.ZipFile(next(dist.glob("*.whl"))) as z:
        names = z.namelist()
        meta = z.read(f"neural_collapse_book-{v}.dist-info/METADATA").decode()
    assert "nclib/__init__.py" in names and "nclib/calibration/quick.json" in names
    assert not any(n.startswith(("tests/", "notebooks/", "book/", "scripts/")) for n in names)
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert re.search(rf"^Version: {re.escape(v)}$", meta, re.M)
    assert re.search(r"^Name: neural-collapse-book$", meta, re.M)
    assert "Description-Content-Type: text/markdown" in meta
    with tarfile.open(next(dist.glob("*.tar.gz"))) as t:
        members = {m.name.split("/", 1)[1] for m in t.getmembers() if "/" in m.name}
    assert {"pyproject.toml", "README.md", "LICENSE", "nclib/__init__.py", "nclib/calibration/quick.json"} <= members
