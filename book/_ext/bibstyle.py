"""Sphinx extension: the bibliography in author–year style, matching the text's citations.

The text cites with ``bibtex_reference_style: author_year`` ("Papyan et al. (2020)"); this
extension registers the pybtex formatting style ``authoryear`` (``bibtex_default_style``) whose
labels are "Papyan et al. 2020" instead of the alpha labels ("PHD20"), sorted by author, year and
title. Two entries with the same label get "2020a", "2020b". The entries' ``note`` fields are
printed as usual: keep only reader-facing notes (venue, status) in ``book/references.bib``
(``tests/test_bibliography.py`` rejects internal ones).
"""

from __future__ import annotations

from collections import Counter

from pybtex.plugin import register_plugin
from pybtex.richtext import Text
from pybtex.style.formatting.plain import Style as PlainStyle
from pybtex.style.labels import BaseLabelStyle


def _last(person) -> str:
    name = " ".join(person.prelast_names + person.last_names)
    try:
        return str(Text.from_latex(name)).replace("{", "").replace("}", "")
    except Exception:  # malformed LaTeX in a name: show it without braces
        return name.replace("{", "").replace("}", "")


def author_year_label(entry) -> str:
    """'Papyan et al. 2020', 'Galanti & Hutter 2022', 'Kothapalli 2023' (authors, else editors,
    else the entry's key)."""
    people = entry.persons.get("author") or entry.persons.get("editor") or []
    names = [_last(p) for p in people if str(p) != "others"]
    others = any(str(p) == "others" for p in people)
    if not names:
        who = entry.fields.get("key", entry.key)
    elif len(names) == 1:
        who = names[0] + (" et al." if others else "")
    elif len(names) == 2 and not others:
        who = f"{names[0]} & {names[1]}"
    else:
        who = f"{names[0]} et al."
    year = entry.fields.get("year", "")
    return f"{who} {year}".strip()


class AuthorYearLabels(BaseLabelStyle):
    def format_labels(self, sorted_entries):
        labels = [author_year_label(e) for e in sorted_entries]
        count, seen = Counter(labels), Counter()
        for label in labels:
            if count[label] == 1:
                yield label
            else:
                yield label + chr(ord("a") + seen[label])
                seen[label] += 1


class AuthorYearStyle(PlainStyle):
    default_label_style = "authoryear"
    default_sorting_style = "author_year_title"


register_plugin("pybtex.style.labels", "authoryear", AuthorYearLabels)
register_plugin("pybtex.style.formatting", "authoryear", AuthorYearStyle)


def setup(app):
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
