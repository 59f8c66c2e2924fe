"""Sphinx extension: the claims ledger, built from the executed chapters.

Every ``nclib.claims.claim(...)`` / ``check(...)`` displays its record as
``<div class="nclib-claim" id="claim-<id>" data-nclib-claim="<json>">``. While Sphinx reads each
executed chapter, this extension collects those records; each ``{claims-ledger}`` directive is
replaced, once every document is read, by

* ``:show: summary`` — counts per status and per chapter, reproduction claims and checks apart;
* ``:show: claims``  — one compact row per reproduction claim (id linked to its display in the
  chapter, status badge, statistic [interval] and n, rule, the paper's number, source linked to
  the bibliography, expected status), with statement, note, per-seed values and calibration
  values in a collapsed ``<details>``;
* ``:show: checks``  — a compact table of the checks;

or all three when ``:show:`` is not given. Nothing is typed by hand, so the ledger cannot drift
from the chapters. Every record (every field, plus the ``doc`` it came from) is written to
``<outdir>/_static/claims.json`` for tools and tests. The page's stylesheet is
``book/_static/claims_ledger.css`` (registered by this extension).

The HTML builders below (:func:`summary_html`, :func:`claims_html`, :func:`checks_html`) are
pure functions of plain data so they can be tested without Sphinx. Records from older or
partial versions of ``nclib.claims`` are shown as well as their fields allow; they never crash
the build, and nothing here emits a warning (the book is built with ``-W``).
"""

from __future__ import annotations

import html
import json
import math
import re
from collections import Counter
from pathlib import Path

from docutils import nodes
from sphinx.util.docutils import SphinxDirective

MARKER = re.compile(r'data-nclib-claim="([^"]*)"')
STATIC = Path(__file__).resolve().parent.parent / "_static"
CSS = "claims_ledger.css"
PARTS = ("summary", "claims", "checks")
CLAIM_STATUSES = ("reproduced", "not reproduced", "inconclusive")
CHECK_STATUSES = ("passed", "failed")
EXPECTED = ("reproduced", "not reproduced", "inconclusive", "uncalibrated")
METHOD_TEXT = {
    "range": ("median", "[min, max] over seeds; the rule is judged on every seed"),
    "bootstrap": ("mean", "95 % percentile-bootstrap interval of the mean over seeds"),
}


# ----------------------------------------------------------------------------- plain helpers
def anchor(id) -> str:
    """The HTML anchor of a record's display in its chapter (same as ``nclib.claims.anchor``)."""
    return "claim-" + re.sub(r"[^A-Za-z0-9_-]", "-", str(id))


def esc(x) -> str:
    """Text, escaped for HTML content and attribute values (``<``, ``&``, both quotes)."""
    return html.escape("" if x is None else str(x), quote=True)


def fmt(v) -> str:
    """A number as 4 significant digits; booleans, strings and odd values as text, never raising."""
    if v is None:
        return "–"
    if isinstance(v, bool):
        return str(v)
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    if math.isnan(f):
        return "NaN"
    return f"{f:.4g}"


def _slug(s) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(s).lower()).strip("-") or "unknown"


def kind_of(r: dict) -> str:
    # records older than claims v2 had no kind: they were all shown as claims
    return "check" if r.get("kind") == "check" else "reproduction"


def status_of(r: dict) -> str:
    s = r.get("status")
    if isinstance(s, str) and s:
        return s
    if "reproduced" in r:  # claims v1: a boolean flag
        return "reproduced" if r["reproduced"] else "not reproduced"
    return "unknown"


def badge(status, cls="nclib-badge") -> str:
    """A status badge: the status as text, coloured by its class (``nclib-s-<status>``)."""
    return f'<span class="{cls} nclib-s-{_slug(status)}">{esc(status)}</span>'


def _link(href, text, title=None, cls=None) -> str:
    t = f' title="{esc(title)}"' if title else ""
    c = f' class="{esc(cls)}"' if cls else ""
    if not href:
        return f"<span{c}{t}>{text}</span>"
    return f'<a href="{esc(href)}"{c}{t}>{text}</a>'


def _values(r: dict, key="values"):
    v = r.get(key)
    return list(v) if isinstance(v, (list, tuple)) else []


def _interval(r: dict):
    iv = r.get("interval")
    if isinstance(iv, (list, tuple)) and len(iv) == 2:
        return iv[0], iv[1]
    return None


def _source(r: dict, cite) -> str:
    key = r.get("source") or ""
    if not key:
        return "–"
    found = cite(key) if cite else None
    if found:
        href, label, title = found
        return _link(href, esc(label), title=title or key)
    return f"<code>{esc(key)}</code>"


# ----------------------------------------------------------------------------- groups
def group(records, doc_order=None, titles=None, hrefs=None):
    """Records ``[(doc, record)]`` → chapter groups ``[{doc, label, href, records}]``, documents
    in ``doc_order`` (e.g. the table of contents) then by name, records in display order."""
    titles, hrefs = titles or {}, hrefs or {}
    by_doc: dict[str, list] = {}
    for doc, r in records:
        if isinstance(r, dict):
            by_doc.setdefault(doc, []).append(r)
    order = {d: i for i, d in enumerate(doc_order or [])}
    out = []
    for doc in sorted(by_doc, key=lambda d: (order.get(d, len(order)), d)):
        recs = by_doc[doc]
        chapters = [str(r.get("chapter")) for r in recs if r.get("chapter") not in (None, "")]
        ch = Counter(chapters).most_common(1)[0][0] if chapters else ""
        title = titles.get(doc) or doc.split("/")[-1]
        label = f"Chapter {ch} · {title}" if ch else title
        out.append({"doc": doc, "label": label, "href": hrefs.get(doc, ""), "records": recs})
    return out


def counts(groups):
    """Per chapter and in total: claim statuses, check statuses, expected statuses."""
    rows, total = [], {"claims": Counter(), "checks": Counter(), "expected": Counter()}
    for g in groups:
        c = {"claims": Counter(), "checks": Counter(), "expected": Counter()}
        for r in g["records"]:
            if kind_of(r) == "check":
                c["checks"][status_of(r)] += 1
            else:
                c["claims"][status_of(r)] += 1
                c["expected"][r.get("expected") or "uncalibrated"] += 1
        for k in c:
            total[k].update(c[k])
        rows.append((g, c))
    return rows, total


def _columns(standard, seen):
    return list(standard) + sorted(s for s in seen if s not in standard)


# ----------------------------------------------------------------------------- summary
def summary_html(groups) -> str:
    rows, total = counts(groups)
    n_claims, n_checks = sum(total["claims"].values()), sum(total["checks"].values())
    claim_cols = _columns(CLAIM_STATUSES, total["claims"])
    check_cols = _columns(CHECK_STATUSES, total["checks"])

    def words(counter, cols):
        return ", ".join(f"{counter.get(s, 0)} {esc(s)}" for s in cols)

    exp = total["expected"]
    exp_cols = _columns(EXPECTED, exp)
    lines = [
        f'<p class="nclib-summary-text"><b>{n_claims}</b> reproduction claim{"s" * (n_claims != 1)}: '
        f"{words(total['claims'], claim_cols)}. "
        f"<b>{n_checks}</b> check{'s' * (n_checks != 1)} (not counted as reproductions): "
        f"{words(total['checks'], check_cols)}. From {len(groups)} page{'s' * (len(groups) != 1)}.</p>"
    ]
    if n_claims:
        lines.append(
            '<p class="nclib-summary-text">Expected (from the calibration): '
            + ", ".join(f"{exp.get(s, 0)} {esc(s)}" for s in exp_cols if exp.get(s, 0))
            + ".</p>"
        )
    head = (
        '<thead><tr><th rowspan="2" class="nclib-t-chapter">Chapter</th>'
        f'<th colspan="{len(claim_cols) + 1}" class="nclib-t-group">Reproduction claims</th>'
        f'<th colspan="{len(check_cols) + 1}" class="nclib-t-group">Checks</th></tr><tr>'
        + "".join(f"<th>{badge(s)}</th>" for s in claim_cols)
        + "<th>all</th>"
        + "".join(f"<th>{badge(s)}</th>" for s in check_cols)
        + "<th>all</th></tr></thead>"
    )

    def cells(c):
        out = ""
        for kind, cols in (("claims", claim_cols), ("checks", check_cols)):
            for s in cols:
                v = c[kind].get(s, 0)
                out += f'<td class="nclib-num{" nclib-zero" if not v else ""}">{v}</td>'
            out += f'<td class="nclib-num nclib-all">{sum(c[kind].values())}</td>'
        return out

    body = "".join(
        f'<tr class="nclib-summary-row"><th scope="row">{_link(g["href"], esc(g["label"]))}</th>{cells(c)}</tr>'
        for g, c in rows
    )
    foot = f'<tfoot><tr class="nclib-summary-total"><th scope="row">All</th>{cells(total)}</tr></tfoot>'
    return (
        "".join(lines) + '<div class="nclib-ledger nclib-summary"><table class="nclib-table">'
        f"{head}<tbody>{body}</tbody>{foot}</table></div>"
    )


# ----------------------------------------------------------------------------- claims
CLAIM_HEAD = ("", "Claim", "Status", "Statistic [interval] (n)", "Rule", "Paper", "Source", "Expected")


def _stat_cell(r) -> str:
    iv = _interval(r)
    n = r.get("n") or len(_values(r))
    method = r.get("method") or ""
    stat_name, iv_text = METHOD_TEXT.get(method, (method or "statistic", "interval"))
    title = f"{stat_name}; interval: {iv_text}"
    s = f'<span class="nclib-stat" title="{esc(title)}"><b>{esc(fmt(r.get("statistic", r.get("value"))))}</b>'
    if iv:
        s += f' <span class="nclib-iv">[{esc(fmt(iv[0]))}, {esc(fmt(iv[1]))}]</span>'
    s += f' <span class="nclib-n">(n={esc(n)})</span></span>'
    return s


def _seed_values(seeds, values) -> str:
    if not values:
        return "–"
    seeds = list(seeds) if isinstance(seeds, (list, tuple)) and len(seeds) == len(values) else [None] * len(values)
    return " ".join(
        f'<span class="nclib-sv">{"" if s is None else f"<i>seed {esc(s)}</i> "}{esc(fmt(v))}</span>'
        for s, v in zip(seeds, values)
    )


def _range(values) -> str:
    try:
        fl = [float(v) for v in values]
    except (TypeError, ValueError):
        return ""
    return f' <span class="nclib-iv">(min {esc(fmt(min(fl)))}, max {esc(fmt(max(fl)))})</span>' if fl else ""


def _calibration(cal) -> str:
    if not cal:
        return "none (uncalibrated)"
    if not isinstance(cal, dict):
        return esc(json.dumps(cal, default=str))
    parts = []
    for name, run in cal.items():
        if isinstance(run, dict):
            vals = _values(run)
            parts.append(
                f'<div class="nclib-cal"><span class="nclib-cal-name">{esc(name)}</span> '
                f"{_seed_values(run.get('seeds'), vals)}{_range(vals)}</div>"
            )
        else:
            parts.append(
                f'<div class="nclib-cal"><span class="nclib-cal-name">{esc(name)}</span> '
                f"{esc(json.dumps(run, default=str))}</div>"
            )
    return "".join(parts)


def _detail(r, chapter_href="") -> str:
    dl = []
    dl.append(("Statement", esc(r.get("statement") or "–")))
    if r.get("note"):
        dl.append(("Note", esc(r["note"])))
    if kind_of(r) == "reproduction":
        method = r.get("method") or ""
        stat_name, iv_text = METHOD_TEXT.get(method, (method or "statistic", "interval"))
        dl.append(("Per seed", _seed_values(r.get("seeds"), _values(r))))
        dl.append(
            (
                "Statistic",
                f"{esc(stat_name)} over {esc(r.get('n') or len(_values(r)))} seeds; "
                f"interval: {esc(iv_text)} (<code>{esc(method or '?')}</code>)",
            )
        )
        dl.append(
            (
                "Calibration",
                f"expected {badge(r.get('expected') or 'uncalibrated', 'nclib-expected')}"
                + _calibration(r.get("calibration")),
            )
        )
    else:
        dl.append(("Value", f"<code>{esc(fmt(r.get('value')))}</code>"))
    where = [f"profile <code>{esc(r.get('profile') or '?')}</code>"]
    if chapter_href:
        where.insert(0, _link(chapter_href, "shown in its chapter"))
    dl.append(("Record", " · ".join(where)))
    return '<dl class="nclib-dl">' + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in dl) + "</dl>"


def claim_row(r, href="", cite=None) -> str:
    """One reproduction claim: a ``<details>`` whose summary is the compact row."""
    status = status_of(r)
    id_ = r.get("id") or "?"
    cells = [
        '<span class="nclib-c nclib-c-toggle" aria-hidden="true"></span>',
        f'<span class="nclib-c nclib-c-id">{_link(href, esc(id_), cls="nclib-id")}</span>',
        f'<span class="nclib-c nclib-c-status">{badge(status)}</span>',
        f'<span class="nclib-c nclib-c-stat">{_stat_cell(r)}</span>',
        f'<span class="nclib-c nclib-c-rule"><code>{esc(r.get("rule") or "–")}</code></span>',
        f'<span class="nclib-c nclib-c-paper">{esc(r.get("paper") or "–")}</span>',
        f'<span class="nclib-c nclib-c-source">{_source(r, cite)}</span>',
        f'<span class="nclib-c nclib-c-expected">{badge(r.get("expected") or "uncalibrated", "nclib-expected")}</span>',
    ]
    return (
        f'<details class="nclib-claim-row" id="ledger-{esc(anchor(id_))}" data-claim-id="{esc(id_)}" '
        f'data-status="{esc(status)}"><summary class="nclib-grid">{"".join(cells)}</summary>'
        f'<div class="nclib-detail">{_detail(r, href)}</div></details>'
    )


def claims_html(groups, cite=None) -> str:
    """Every reproduction claim, grouped by chapter, one compact row each."""
    body = []
    for g in groups:
        recs = [r for r in g["records"] if kind_of(r) == "reproduction"]
        if not recs:
            continue
        body.append(f'<div class="nclib-group">{_link(g["href"], esc(g["label"]))}</div>')
        for r in recs:
            href = f"{g['href']}#{anchor(r.get('id') or '?')}" if g["href"] else f"#{anchor(r.get('id') or '?')}"
            body.append(claim_row(r, href, cite))
    if not body:
        return '<p class="nclib-empty">No reproduction claim recorded.</p>'
    head = "".join(f'<span class="nclib-c">{esc(h)}</span>' for h in CLAIM_HEAD)
    return (
        f'<div class="nclib-ledger nclib-claims"><div class="nclib-grid nclib-head">{head}</div>'
        + "".join(body)
        + "</div>"
    )


# ----------------------------------------------------------------------------- checks
CHECK_HEAD = ("Check", "Status", "Value", "Rule", "Statement", "Source")


def checks_html(groups, cite=None) -> str:
    """Every check, grouped by chapter, in a compact table (statement and note in the row)."""
    body = []
    for g in groups:
        recs = [r for r in g["records"] if kind_of(r) == "check"]
        if not recs:
            continue
        body.append(
            f'<tr class="nclib-group-row"><th colspan="{len(CHECK_HEAD)}">{_link(g["href"], esc(g["label"]))}</th></tr>'
        )
        for r in recs:
            id_ = r.get("id") or "?"
            href = f"{g['href']}#{anchor(id_)}" if g["href"] else f"#{anchor(id_)}"
            note = f'<br><span class="nclib-note">{esc(r["note"])}</span>' if r.get("note") else ""
            body.append(
                f'<tr class="nclib-check-row" id="ledger-{esc(anchor(id_))}" data-claim-id="{esc(id_)}" '
                f'data-status="{esc(status_of(r))}">'
                f'<td class="nclib-c-id">{_link(href, esc(id_), cls="nclib-id")}</td>'
                f"<td>{badge(status_of(r))}</td>"
                f'<td class="nclib-num"><code>{esc(fmt(r.get("value")))}</code></td>'
                f"<td><code>{esc(r.get('rule') or '–')}</code></td>"
                f'<td class="nclib-c-statement">{esc(r.get("statement") or "–")}{note}</td>'
                f'<td class="nclib-c-source">{_source(r, cite)}</td></tr>'
            )
    if not body:
        return '<p class="nclib-empty">No check recorded.</p>'
    head = "".join(f"<th>{esc(h)}</th>" for h in CHECK_HEAD)
    return (
        '<div class="nclib-ledger nclib-checks"><table class="nclib-table">'
        '<colgroup><col class="w-id"><col class="w-status"><col class="w-value"><col class="w-rule">'
        '<col class="w-statement"><col class="w-source"></colgroup>'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def ledger_html(groups, parts=PARTS, cite=None) -> str:
    make = {"summary": summary_html, "claims": lambda g: claims_html(g, cite), "checks": lambda g: checks_html(g, cite)}
    return "".join(make[p](groups) for p in parts)


# ----------------------------------------------------------------------------- Sphinx glue
class claims_ledger_node(nodes.General, nodes.Element):
    pass


def _parts(arg):
    parts = tuple(p for p in re.split(r"[\s,]+", arg or "") if p)
    bad = [p for p in parts if p not in PARTS]
    if bad:
        raise ValueError(f"unknown part(s) {bad}; use any of {', '.join(PARTS)}")
    return parts or PARTS


class ClaimsLedger(SphinxDirective):
    has_content = False
    option_spec = {"show": _parts}

    def run(self):
        self.env.nclib_ledger_docs = getattr(self.env, "nclib_ledger_docs", set()) | {self.env.docname}
        return [claims_ledger_node(parts=self.options.get("show", PARTS))]


def _collect(app, doctree):
    env = app.env
    if not hasattr(env, "nclib_claims"):
        env.nclib_claims = {}
    recs = []
    for raw in doctree.findall(nodes.raw):
        for m in MARKER.finditer(raw.astext()):
            try:
                rec = json.loads(html.unescape(m.group(1)))
            except ValueError:
                continue
            if isinstance(rec, dict):
                recs.append(rec)
    if recs:
        env.nclib_claims[env.docname] = recs
    else:
        env.nclib_claims.pop(env.docname, None)


def _purge(app, env, docname):
    if hasattr(env, "nclib_claims"):
        env.nclib_claims.pop(docname, None)
    if hasattr(env, "nclib_ledger_docs"):
        env.nclib_ledger_docs.discard(docname)


def _merge(app, env, docnames, other):
    env.nclib_claims = {**getattr(env, "nclib_claims", {}), **getattr(other, "nclib_claims", {})}
    env.nclib_ledger_docs = getattr(env, "nclib_ledger_docs", set()) | getattr(other, "nclib_ledger_docs", set())


def _outdated(app, env, added, changed, removed):
    # the ledger page depends on every chapter: rewrite it on every build
    return list(getattr(env, "nclib_ledger_docs", set()))


def _toc_order(env):
    """Documents in reading order (the table of contents' next-links from the root)."""
    try:
        rel = env.collect_relations()
    except Exception:  # pragma: no cover - never let ordering break the build
        return []
    order, doc, seen = [], env.config.root_doc, set()
    while doc and doc not in seen:
        seen.add(doc)
        order.append(doc)
        doc = rel.get(doc, [None, None, None])[2]
    return order


def _citer(app, fromdoc):
    """key → (href, "Author et al. year", tooltip) from sphinxcontrib-bibtex, or None if unknown."""
    try:
        domain = app.env.get_domain("cite")
        cits = {c.key: c for c in domain.citations}
    except Exception:
        cits = {}

    def label(entry):
        try:
            persons = entry.persons.get("author") or entry.persons.get("editor") or []
            names = [" ".join(p.last_names) for p in persons]
            names = [re.sub(r"[{}\\]", "", n) for n in names if n]
            year = entry.fields.get("year", "")
            who = (
                names[0]
                if len(names) == 1
                else f"{names[0]} & {names[1]}"
                if len(names) == 2
                else f"{names[0]} et al."
                if names
                else ""
            )
            return f"{who} {year}".strip() or None
        except Exception:
            return None

    def cite(key):
        c = cits.get(key)
        if c is None:
            return None
        try:
            href = app.builder.get_relative_uri(fromdoc, c.bibliography_key.docname) + "#" + c.citation_id
        except Exception:
            return None
        title = None
        try:
            title = re.sub(r"[{}\\]", "", str(c.entry.fields.get("title", ""))) or None
        except Exception:
            pass
        return href, label(c.entry) or key, title

    return cite


def _resolve(app, doctree, fromdocname):
    found = list(doctree.findall(claims_ledger_node))
    if not found:
        return
    env = app.env
    claims = getattr(env, "nclib_claims", {})
    records = [(doc, r) for doc in claims for r in claims[doc]]
    titles, hrefs = {}, {}
    for doc in claims:
        t = env.titles.get(doc)
        titles[doc] = t.astext() if t is not None else doc
        try:
            hrefs[doc] = app.builder.get_relative_uri(fromdocname, doc)
        except Exception:
            hrefs[doc] = ""
    groups = group(records, _toc_order(env), titles, hrefs)
    cite = _citer(app, fromdocname)
    for node in found:
        if not records:
            node.replace_self(nodes.paragraph(text="No claims recorded: no chapter has been executed yet."))
            continue
        node.replace_self(nodes.raw("", ledger_html(groups, node.get("parts", PARTS), cite), format="html"))


def _dump(app, exc):
    if exc is not None or app.builder.format != "html":
        return
    claims = getattr(app.env, "nclib_claims", {})
    order = {d: i for i, d in enumerate(_toc_order(app.env))}
    docs = sorted(claims, key=lambda d: (order.get(d, len(order)), d))
    out = Path(app.outdir) / "_static" / "claims.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps([{"doc": d, **r} for d in docs for r in claims[d]], indent=1))


def _static(app, config):
    if STATIC.joinpath(CSS).is_file() and str(STATIC) not in map(str, config.html_static_path):
        config.html_static_path = list(config.html_static_path) + [str(STATIC)]


def setup(app):
    app.add_node(claims_ledger_node)
    app.add_directive("claims-ledger", ClaimsLedger)
    app.connect("config-inited", _static)
    app.add_css_file(CSS)
    app.connect("doctree-read", _collect)
    app.connect("env-purge-doc", _purge)
    app.connect("env-merge-info", _merge)
    app.connect("env-get-outdated", _outdated)
    app.connect("doctree-resolved", _resolve)
    app.connect("build-finished", _dump)
    return {"version": "0.2", "parallel_read_safe": True, "parallel_write_safe": True, "env_version": 2}
