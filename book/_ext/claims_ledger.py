"""Sphinx extension: the claims ledger, built from the executed chapters.

Every ``nclib.claims.claim(...)`` displays its record as HTML carrying the JSON in a
``data-nclib-claim`` attribute. While Sphinx reads each executed notebook, this extension
collects those records; the ``{claims-ledger}`` directive is replaced, after all documents are
read, by a table of every claim (chapter, source, rule, measured value, reproduced or not).
Nothing is typed by hand, so the ledger cannot drift from the chapters. The records are also
written to ``<outdir>/_static/claims.json`` for tools and tests.
"""
from __future__ import annotations

import html
import json
import re
from pathlib import Path

from docutils import nodes
from sphinx.util.docutils import SphinxDirective

MARKER = re.compile(r'data-nclib-claim="([^"]*)"')


class claims_ledger_node(nodes.General, nodes.Element):
    pass


class ClaimsLedger(SphinxDirective):
    has_content = False

    def run(self):
        self.env.nclib_ledger_docs = getattr(self.env, "nclib_ledger_docs", set()) | {self.env.docname}
        return [claims_ledger_node()]


def _collect(app, doctree):
    env = app.env
    if not hasattr(env, "nclib_claims"):
        env.nclib_claims = {}
    recs = []
    for raw in doctree.findall(nodes.raw):
        for m in MARKER.finditer(raw.astext()):
            recs.append(json.loads(html.unescape(m.group(1))))
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


def _p(text, literal=False):
    para = nodes.paragraph()
    para += nodes.literal(text=text) if literal else nodes.Text(text)
    return para


def _value(v):
    if isinstance(v, bool):
        return str(v)
    return f"{float(v):.4g}"


def _table(app, fromdoc, records):
    headers = ["Chapter", "Claim", "Source", "Rule checked", "Measured", "Status"]
    widths = [14, 40, 12, 14, 10, 14]
    table = nodes.table(classes=["nclib-ledger"])
    tgroup = nodes.tgroup(cols=len(headers))
    table += tgroup
    for w in widths:
        tgroup += nodes.colspec(colwidth=w)
    thead = nodes.thead()
    tgroup += thead
    row = nodes.row()
    for h in headers:
        row += nodes.entry("", _p(h))
    thead += row
    tbody = nodes.tbody()
    tgroup += tbody
    for doc, r in records:
        row = nodes.row(classes=["nclib-claim-row"])
        title = app.env.titles.get(doc)
        ch = nodes.paragraph()
        ref = nodes.reference("", "", refuri=app.builder.get_relative_uri(fromdoc, doc))
        ref += nodes.Text(f"{r.get('chapter', '')} · {title.astext() if title else doc}")
        ch += ref
        row += nodes.entry("", ch)
        stmt = nodes.paragraph()
        stmt += nodes.strong(text=r["id"])
        stmt += nodes.Text(" — " + r["statement"])
        if r.get("note"):
            stmt += nodes.Text(" (" + r["note"] + ")")
        row += nodes.entry("", stmt)
        row += nodes.entry("", _p(r["source"], literal=True))
        row += nodes.entry("", _p(r["rule"], literal=True))
        row += nodes.entry("", _p(_value(r["value"]), literal=True))
        status = "reproduced" if r["reproduced"] else "not reproduced"
        row += nodes.entry("", _p(f"{status} ({r.get('profile', '')})"))
        tbody += row
    return table


def _resolve(app, doctree, fromdocname):
    claims = getattr(app.env, "nclib_claims", {})
    records = [(doc, r) for doc in sorted(claims) for r in claims[doc]]
    for node in list(doctree.findall(claims_ledger_node)):
        if not records:
            node.replace_self(_p("No claims recorded: no chapter has been executed yet."))
            continue
        n_rep = sum(1 for _, r in records if r["reproduced"])
        summary = _p(f"{len(records)} claims from {len(claims)} chapters: {n_rep} reproduced, "
                     f"{len(records) - n_rep} not reproduced (their measured counter-claims hold).")
        node.replace_self([summary, _table(app, fromdocname, records)])


def _dump(app, exc):
    if exc is not None or app.builder.format != "html":
        return
    claims = getattr(app.env, "nclib_claims", {})
    out = Path(app.outdir) / "_static" / "claims.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps([{"doc": d, **r} for d in sorted(claims) for r in claims[d]], indent=1))


def setup(app):
    app.add_node(claims_ledger_node)
    app.add_directive("claims-ledger", ClaimsLedger)
    app.connect("doctree-read", _collect)
    app.connect("env-purge-doc", _purge)
    app.connect("env-merge-info", _merge)
    app.connect("env-get-outdated", _outdated)
    app.connect("doctree-resolved", _resolve)
    app.connect("build-finished", _dump)
    return {"version": "0.1", "parallel_read_safe": True, "parallel_write_safe": True, "env_version": 1}
