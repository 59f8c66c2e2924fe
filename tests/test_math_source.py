"""The chapters' and pages' math markup, checked in the sources (MyST, dollarmath).

Display math ``$$ … $$`` must stand alone between blank lines: inside a paragraph that also holds
inline ``$…$``, markdown-it pairs the dollars differently from what the author meant and the page
shows garbled formulas (issue 18). Labelled key equations are referenced with ``{eq}``.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.md")) + sorted((ROOT / "book").glob("*.md"))
FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
# the key equations, labelled once (`$$ … $$ (label)`) and referenced with {eq}`label`
KEY_EQUATIONS = ("eq-nc1", "eq-nc2", "eq-nc3", "eq-nc4", "eq-cdnv", "eq-mcr2", "eq-ufm", "eq-ufm-imbalanced", "eq-dnc")


def prose_lines(text):
    """(line number, line) of the markdown outside code fences and directives' bodies."""
    fence = None
    for i, line in enumerate(text.split("\n"), 1):
        m = FENCE.match(line)
        if fence:
            if m and line.strip().strip("`~") == "" and len(line.strip()) >= len(fence):
                fence = None
            continue
        if m:
            fence = m.group(1)
            continue
        yield i, line


def display_math_in_paragraphs(text):
    """Display blocks that touch a text line (no blank line before the opening or after the
    closing ``$$``), and ``$$`` that does not start its line."""
    lines = dict(prose_lines(text))
    nums = sorted(lines)
    bad, i = [], 0
    while i < len(nums):
        n = nums[i]
        s = lines[n].strip()
        if s.startswith("$$"):
            end = i
            one_line = s.count("$$") >= 2
            if not one_line:
                end = i + 1
                while end < len(nums) and "$$" not in lines[nums[end]]:
                    end += 1
            prev = lines.get(n - 1, "").strip()
            close = nums[min(end, len(nums) - 1)]
            after = lines.get(close + 1, "").strip()
            if prev or after:
                bad.append(f"line {n}: display math inside a paragraph (before: {prev[:30]!r}, after: {after[:30]!r})")
            i = end + 1
            continue
        if "$$" in s:
            bad.append(f"line {n}: '$$' inside a line of text: {s[:50]!r}")
        i += 1
    return bad


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_display_math_stands_alone(path):
    assert not display_math_in_paragraphs(path.read_text()), "\n".join(display_math_in_paragraphs(path.read_text()))


def inline_math_problems(text):
    """Paragraphs whose inline ``$`` do not pair up (outside code, display math and ``\\$``), and
    roles inside a formula (``$l={glue:text}`x`$``: the formula then shows the role's source, not
    its value). Unpaired dollars pair across the wrong text: raw TeX and a stray '$' on the page."""
    bad, para, start = [], [], None
    for n, line in list(prose_lines(text)) + [(None, "")]:
        if line.strip() and not line.strip().startswith("$$"):
            start = start or n
            para.append(line)
            continue
        body = re.sub(r"\{[\w:-]+\}`[^`]*`", "<role>", " ".join(para))
        body = re.sub(r"`[^`]*`", "", body).replace("\\$", "")
        if body.count("$") % 2:
            bad.append(f"line {start}: an odd number of '$' in the paragraph: {body[:70]!r}")
        for span in re.findall(r"\$([^$]*)\$", body):
            if "<role>" in span:
                bad.append(f"line {start}: a role inside a formula: ${span[:50]}$ (write $x=$ {{role}}`...`)")
        para, start = [], None
    return bad


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_inline_math_dollars_pair_up(path):
    assert not inline_math_problems(path.read_text()), "\n".join(inline_math_problems(path.read_text()))


def test_the_check_catches_display_math_in_a_paragraph():
    assert inline_math_problems("for $N={glue:text}`n`: and ($x$)\n")
    assert inline_math_problems("from $l={glue:text}`ch5.l`$ on\n")
    assert not inline_math_problems("for $N=$ {glue:text}`n` and `$` in code, \\$5\n")
    assert display_math_in_paragraphs("text $a$ here\n$$x=1$$\nmore $b$\n")
    assert display_math_in_paragraphs("text\n\n$$\nx=1\n$$\nmore\n")
    assert display_math_in_paragraphs("inline $$x$$ display\n")
    assert not display_math_in_paragraphs("text $a$\n\n$$\nx=1\n$$ (eq-x)\n\nmore\n")
    assert not display_math_in_paragraphs("```python\nprint('$$')\n```\n")


def test_key_equations_are_labelled_once_and_referenced():
    text = {p: p.read_text() for p in SOURCES}
    for label in KEY_EQUATIONS:
        defined = [p.name for p, t in text.items() if re.search(r"^\$\$\s*\(" + re.escape(label) + r"\)\s*$", t, re.M)]
        assert len(defined) == 1, f"{label}: labelled in {defined or 'no source'}"
        refs = [p.name for p, t in text.items() if "{eq}`" + label + "`" in t]
        assert refs, f"{label} is never referenced with {{eq}}"
