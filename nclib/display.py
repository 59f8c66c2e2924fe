"""Tables for the book and the notebooks: one display helper instead of raw DataFrame reprs.

:func:`table` turns a DataFrame (or a Series, a dict, a list of dicts) into a :class:`Table`
whose HTML (``_repr_html_``: the book, Jupyter, Colab) has cell padding, right-aligned numbers in
one format per column, no meaningless index (a default ``RangeIndex`` is dropped; a float index
becomes a formatted first column), and sits in a horizontal scroll container whose first column
stays in place (``position: sticky``) when the table is wider than the page. Its plain-text repr
(``__repr__``: terminals, nbval) is an aligned text table with the same numbers. Values are
shown as a reader wants them: numpy/torch scalars as numbers, never ``np.float64(...)``;
devices and dtypes by name; NaN as an em dash.

Number formats: ``digits`` significant digits (default 3) with plain decimals between 1e-3 and
1e6 and thousands separators for large numbers (``12,345``), scientific notation outside that
range (``2.1e-07``); integers exactly. ``formats`` overrides per column with a format string
(``"{:.2e}"``, ``"{:.1%}"``) or a callable.
"""

from __future__ import annotations

import html
import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["table", "Table", "format_value", "plain"]

CSS_CLASS = "nclib-table"
_STYLE = f"""<style>
.{CSS_CLASS} {{ overflow-x: auto; max-width: 100%; margin: 0.4em 0 1em; }}
.{CSS_CLASS} table {{ border-collapse: collapse; font-size: 0.86em; line-height: 1.3;
  font-variant-numeric: tabular-nums; margin: 0; width: auto; }}
.{CSS_CLASS} th, .{CSS_CLASS} td {{ padding: 0.3em 0.75em; border-bottom: 1px solid rgba(128,128,128,0.3);
  white-space: nowrap; }}
.{CSS_CLASS} thead th {{ border-bottom: 2px solid rgba(128,128,128,0.6); text-align: center;
  vertical-align: bottom; }}
.{CSS_CLASS} td.num {{ text-align: right; }}
.{CSS_CLASS} td.txt, .{CSS_CLASS} th.row {{ text-align: left; }}
.{CSS_CLASS} caption {{ caption-side: top; text-align: left; font-style: italic; padding: 0.2em 0; }}
.{CSS_CLASS} tr > :first-child {{ position: sticky; left: 0; z-index: 1;
  background: var(--pst-color-background, var(--jp-layout-color0, #fff)); }}
</style>"""


def plain(v: Any) -> Any:
    """A value as plain Python: numpy/torch scalars and 0-d arrays to numbers, devices and dtypes to
    their names, containers recursively (for printing dicts and lists without reprs like
    ``np.float64(0.5)`` or ``device(type='cpu')``)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        torch = None
    if torch is not None:
        if isinstance(v, torch.Tensor):
            return v.item() if v.numel() == 1 else plain(v.detach().cpu().tolist())
        if isinstance(v, (torch.device, torch.dtype)):
            return str(v)
    if isinstance(v, np.ndarray):
        return v.item() if v.ndim == 0 else plain(v.tolist())
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.dtype):
        return str(v)
    if isinstance(v, Mapping):
        return {plain(k): plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return type(v)(plain(x) for x in v)
    return v


def format_value(v: Any, digits: int = 3) -> str:
    """One cell as text: see the module docstring for the number formats."""
    if not isinstance(digits, int) or isinstance(digits, bool) or digits < 1:
        raise ValueError(f"digits must be a positive int, got {digits!r}")
    v = plain(v)
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, numbers.Integral):
        return f"{int(v):,}" if abs(int(v)) >= 10_000 else str(int(v))
    if isinstance(v, numbers.Real):
        x = float(v)
        if math.isnan(x):
            return "—"
        if math.isinf(x):
            return "∞" if x > 0 else "−∞"
        if x == 0:
            return "0"
        a = abs(x)
        if a < 1e-3 or a >= 1e6:
            return f"{x:.{max(digits - 1, 0)}e}".replace("e-0", "e-").replace("e+0", "e+")
        decimals = max(digits - (int(math.floor(math.log10(a))) + 1), 0)
        return f"{x:,.{decimals}f}"
    if isinstance(v, Mapping):
        return ", ".join(f"{k}={format_value(x, digits)}" for k, x in v.items())
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(format_value(x, digits) for x in v) + "]"
    return str(v)


def _is_number(v) -> bool:
    v = plain(v)
    return isinstance(v, numbers.Number) and not isinstance(v, bool)


def _label(x) -> str:
    if isinstance(x, tuple):
        return " · ".join(_label(p) for p in x if str(p) != "")
    return format_value(x) if isinstance(x, (float, np.floating)) else str(plain(x))


def _as_frame(data) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, pd.Series):
        return data.to_frame(name=data.name if data.name is not None else "value")
    if isinstance(data, Mapping):
        vals = list(data.values())
        if vals and all(isinstance(v, Mapping) for v in vals):
            return pd.DataFrame({k: dict(v) for k, v in data.items()}).T
        return pd.DataFrame({"value": [plain(v) for v in vals]}, index=pd.Index([str(k) for k in data], name=""))
    if isinstance(data, (list, tuple)) and data and all(isinstance(r, Mapping) for r in data):
        return pd.DataFrame(list(data))
    raise TypeError(f"table() takes a DataFrame, Series, dict or list of dicts, got {type(data).__name__}")


class Table:
    """A formatted table: ``_repr_html_`` for notebooks and the book, ``__repr__`` as text.
    ``frame`` is the DataFrame shown (index moved into columns as decided by :func:`table`),
    ``cells`` the formatted strings (same shape)."""

    def __init__(
        self,
        header: list[list[str]],
        cells: list[list[str]],
        numeric: list[bool],
        caption: str | None,
        row_header: bool,
        frame: pd.DataFrame,
    ):
        self.header, self.cells, self.numeric = header, cells, numeric
        self.caption, self.row_header, self.frame = caption, row_header, frame

    def _repr_html_(self) -> str:
        out = [_STYLE, f'<div class="{CSS_CLASS}"><table>']
        if self.caption:
            out.append(f"<caption>{html.escape(self.caption)}</caption>")
        out.append("<thead>")
        for level in self.header:
            out.append("<tr>" + "".join(f'<th scope="col">{html.escape(h)}</th>' for h in _merge(level)) + "</tr>")
        out.append("</thead><tbody>")
        for row in self.cells:
            tds = []
            for j, (c, num) in enumerate(zip(row, self.numeric)):
                if j == 0 and self.row_header:
                    tds.append(f'<th scope="row" class="row">{html.escape(c)}</th>')
                else:
                    tds.append(f'<td class="{"num" if num else "txt"}">{html.escape(c)}</td>')
            out.append("<tr>" + "".join(tds) + "</tr>")
        out.append("</tbody></table></div>")
        return "".join(out)

    def __repr__(self) -> str:
        head = [" ".join(x for x in col if x) for col in zip(*self.header)] if self.header else []
        rows = [head] + self.cells
        widths = [max(len(r[j]) for r in rows) for j in range(len(head))]
        lines = [self.caption] if self.caption else []
        for i, r in enumerate(rows):
            lines.append(
                "  ".join(
                    c.rjust(w) if (self.numeric[j] and i) else c.ljust(w) for j, (c, w) in enumerate(zip(r, widths))
                ).rstrip()
            )
            if i == 0:
                lines.append("  ".join("-" * w for w in widths))
        return "\n".join(lines)


def _merge(level: list[str]) -> list[str]:
    # repeated group labels of a MultiIndex header are shown once per column anyway: keep it simple
    return level


def table(
    data,
    *,
    digits: int = 3,
    formats: Mapping[str, str | Callable] | None = None,
    fmt: str | Callable | None = None,
    index: bool | None = None,
    caption: str | None = None,
) -> Table:
    """The book's table display of ``data`` (DataFrame, Series, dict, list of dicts).

    ``digits``: significant digits of floats; ``formats``: ``{column: "{:.2e}" | callable}``;
    ``fmt``: one such format for every numeric column without an entry in ``formats``;
    ``index``: show the index as the first column (default: unless it is a default
    ``RangeIndex``; a float index is formatted like the numbers); ``caption``: a line above the
    table. Returns a :class:`Table`."""
    df = _as_frame(data)
    formats = dict(formats or {})
    unknown = [k for k in formats if k not in df.columns and k not in (df.index.names or [])]
    if unknown:
        raise ValueError(f"formats for unknown columns {unknown}; columns are {list(df.columns)}")
    default_index = (
        isinstance(df.index, pd.RangeIndex) and df.index.start == 0 and df.index.step == 1 and df.index.name is None
    )
    show_index = (not default_index) if index is None else bool(index)
    n_index = df.index.nlevels
    if show_index:
        idx = df.index.to_frame(index=False)
        names = ["" if n is None else str(n) for n in df.index.names]
        if df.columns.nlevels > 1:
            idx.columns = pd.MultiIndex.from_tuples([(n,) + ("",) * (df.columns.nlevels - 1) for n in names])
        else:
            idx.columns = names
        df = pd.concat([idx, df.reset_index(drop=True)], axis=1)
    nlev = df.columns.nlevels
    header = [
        [_label(c[lv]) if isinstance(c, tuple) else (_label(c) if lv == nlev - 1 else "") for c in df.columns]
        for lv in range(nlev)
    ]
    cells, numeric = [], []
    cols = list(df.columns)
    for j, col in enumerate(cols):
        key = col if not isinstance(col, tuple) else col
        values = df.iloc[:, j].tolist()
        numeric.append(
            all(_is_number(v) or v is None or (isinstance(v, float) and math.isnan(v)) for v in values)
            and any(_is_number(v) for v in values)
        )
        f = formats.get(key, formats.get(col[0] if isinstance(col, tuple) else None)) if formats else None
        if f is None and numeric[-1] and not (show_index and j < n_index):
            f = fmt
        out = []
        for v in values:
            if f is None or v is None or (isinstance(plain(v), float) and math.isnan(plain(v))):
                out.append(format_value(v, digits))
            elif callable(f):
                out.append(str(f(v)))
            else:
                out.append(f.format(plain(v)))
        cells.append(out)
    rows = [list(r) for r in zip(*cells)] if cells else []
    return Table(header, rows, numeric, caption, show_index and len(cols) > 1, df)
