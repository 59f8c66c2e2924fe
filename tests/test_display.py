"""nclib.display: the book's one table helper — padding, number formats, no float index, a scroll
container with a sticky first column, a plain-text repr, no raw reprs of numpy/torch values."""

import re

import numpy as np
import pandas as pd
import pytest
import torch

from nclib.display import Table, format_value, plain, table


@pytest.mark.parametrize(
    "v, text",
    [
        (0.22314, "0.223"),
        (-0.07412, "-0.0741"),
        (12.345, "12.3"),
        (1234.5, "1,234"),
        (1.5e-7, "1.50e-7"),
        (2.5e8, "2.50e+8"),
        (0.0, "0"),
        (3, "3"),
        (123456, "123,456"),
        (float("nan"), "—"),
        (None, "—"),
        (True, "yes"),
        (np.float64(0.5), "0.500"),
        (np.int64(7), "7"),
        (torch.tensor(0.25), "0.250"),
        (torch.device("cpu"), "cpu"),
        ({"a": np.float64(1.0)}, "a=1.00"),
        (float("inf"), "∞"),
    ],
)
def test_format_value(v, text):
    assert format_value(v) == text


def test_format_value_rejects_bad_digits():
    with pytest.raises(ValueError, match="digits"):
        format_value(1.0, digits=0)


def test_plain_removes_numpy_and_torch_reprs():
    d = plain({"x": np.float64(0.5), "dev": torch.device("cpu"), "t": torch.tensor([1.0, 2.0]), "k": [np.int64(2)]})
    assert repr(d) == "{'x': 0.5, 'dev': 'cpu', 't': [1.0, 2.0], 'k': [2]}"


def frame():
    return pd.DataFrame({"a": [-0.2231, -0.1534, -0.0741], "b": [1.0, 20.0, 300.0], "name": ["x", "y", "z"]})


def test_html_has_padding_scroll_container_and_sticky_first_column():
    h = table(frame())._repr_html_()
    assert re.search(r"\.nclib-table \{[^}]*overflow-x: auto", h)
    assert re.search(r"th, \.nclib-table td \{[^}]*padding: 0\.3em 0\.75em", h)
    assert re.search(r"tr > :first-child \{[^}]*position: sticky; left: 0", h)
    assert '<div class="nclib-table"><table>' in h
    # numbers are separate, right-aligned cells: never run together as "-0.223-0.153-0.074"
    assert '<td class="num">-0.223</td><td class="num">1.00</td><td class="txt">x</td>' in h


def test_default_index_is_dropped_and_a_float_index_is_formatted():
    t = table(frame())
    assert t.header == [["a", "b", "name"]] and not t.row_header
    s = pd.Series([1.0, 2.0], index=pd.Index([0.1, 0.25], name="lam"), name="cos")
    t = table(s)
    assert t.header == [["lam", "cos"]] and [r[0] for r in t.cells] == ["0.100", "0.250"]
    assert "0.000000" not in t._repr_html_() and "0.100000" not in repr(t)
    assert table(frame(), index=True).header[0][0] == ""


def test_formats_per_column_and_caption():
    t = table(frame(), formats={"a": "{:+.1f}", "b": lambda v: f"{v:.0f} s"}, caption="a caption")
    assert [r[:2] for r in t.cells] == [["-0.2", "1 s"], ["-0.2", "20 s"], ["-0.1", "300 s"]]
    assert "<caption>a caption</caption>" in t._repr_html_() and repr(t).startswith("a caption")
    with pytest.raises(ValueError, match="unknown columns"):
        table(frame(), formats={"zz": "{}"})


def test_text_repr_is_aligned():
    lines = repr(table(frame())).split("\n")
    assert lines[0].split() == ["a", "b", "name"] and set(lines[1]) <= {"-", " "}
    assert len({len(line) for line in lines[2:]}) == 1 or all(line.endswith(("x", "y", "z")) for line in lines[2:])


def test_dicts_multiindex_and_html_escaping():
    t = table({"loss": np.float64(0.5), "device": torch.device("cpu")})
    assert t.cells == [["loss", "0.500"], ["device", "cpu"]]
    assert "np.float64" not in repr(t) and "device(type" not in t._repr_html_()
    mi = pd.DataFrame(
        [[1.0, 2.0]], columns=pd.MultiIndex.from_tuples([("p", 1), ("p", 2)]), index=pd.Index(["<r>"], name="row")
    )
    t = table(mi)
    assert len(t.header) == 2 and "&lt;r&gt;" in t._repr_html_()
    rows = table([{"a": 1, "b": 2.0}, {"a": 3, "b": 4.5}])
    assert isinstance(rows, Table) and rows.cells == [["1", "2.00"], ["3", "4.50"]]
    with pytest.raises(TypeError, match="DataFrame"):
        table(3.0)


def test_index_named_like_a_column_and_multiindex_on_both_axes():
    df = pd.DataFrame({"R": [1.0, 2.0]}, index=pd.Index([10, 30], name="R"))
    assert table(df).header == [["R", "R"]]
    both = pd.DataFrame(
        np.arange(8.0).reshape(2, 4),
        index=pd.MultiIndex.from_tuples([("ce", 1), ("etf", 10)], names=["method", "R"]),
        columns=pd.MultiIndex.from_product([["a", "b"], ["x", "y"]]),
    )
    t = table(both, fmt="{:.1f}")
    assert t.header[0][:2] == ["method", "R"] and t.header[1][:2] == ["", ""]
    assert t.cells[1] == ["etf", "10", "4.0", "5.0", "6.0", "7.0"]
