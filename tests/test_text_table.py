"""The tables every command prints (cli/text.py `table`, through tabulate) and the colour policy."""
import io

import pytest
from wcwidth import wcswidth

from weightkit.cli import text
from weightkit.cli.text import colour, md_escape, paint, table


def test_columns_align_under_a_dashed_header():
    out = table([["dense/kernel", "(4, 3)"], ["b", "()"]], ["name", "shape"])
    assert out.splitlines() == ["name          shape",
                                "------------  ------",
                                "dense/kernel  (4, 3)",
                                "b             ()"]


def test_cells_stay_text_numbers_are_not_reformatted():
    out = table([["1e-05", "0012", "1,234"]], ["a", "b", "c"])
    assert out.splitlines()[2].split() == ["1e-05", "0012", "1,234"]


def test_colour_codes_and_wide_characters_take_their_terminal_width():
    lines = table([["\x1b[31mx\x1b[0m", "日本"], ["yyy", "z"]], ["a", "b"]).splitlines()
    plain = [line.replace("\x1b[31m", "").replace("\x1b[0m", "") for line in lines]
    # every second column starts at the same terminal column
    starts = [wcswidth(line[:line.index(second)]) for line, second in zip(plain[2:], ["日本", "z"])]
    assert starts == [5, 5]


def test_wrapped_column_continues_on_its_own_lines():
    out = table([["a", "word " * 6, "x"]], ["h", "details", "end"], wrap={1: 12}).splitlines()
    assert out[2].startswith("a  word word") and out[2].endswith("x")
    assert [line[:3] for line in out[3:]] == ["   ", "   "] and len(out) == 5


def test_markdown_table_is_github_style_with_pipes_escaped():
    assert table([["1", md_escape("a|b")]], ["a", "b"], markdown=True).splitlines() == [
        "| a | b    |", "|---|------|", "| 1 | a\\|b |"]


def test_no_rows_is_the_header():
    assert table([], ["name", "shape"]).splitlines() == ["name  shape", "----  -----"]


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("env, choice, tty, expected", [
    ({}, "auto", True, True), ({}, "auto", False, False),
    ({"NO_COLOR": "1"}, "auto", True, False), ({"NO_COLOR": ""}, "auto", True, True),
    ({"FORCE_COLOR": "1"}, "auto", False, True), ({"FORCE_COLOR": ""}, "auto", False, False),
    ({"NO_COLOR": "1", "FORCE_COLOR": "1"}, "auto", True, False),
    ({"NO_COLOR": "1"}, "always", False, True), ({"FORCE_COLOR": "1"}, "never", True, False),
])
def test_colour_policy(monkeypatch, env, choice, tty, expected):
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert colour(_Tty() if tty else io.StringIO(), choice) is expected
    assert paint("x", "31", expected) == ("\x1b[31mx\x1b[0m" if expected else "x")


# --- long tables: `_plain_layout`, byte for byte what tabulate gives -----------------------------

def _tabulated(rows, headers, markdown=False):
    """What tabulate itself makes of the table, as `table` calls it (the reference)."""
    import tabulate
    padding, tabulate.MIN_PADDING = tabulate.MIN_PADDING, 0
    try:
        return tabulate.tabulate([list(r) for r in rows], list(headers), disable_numparse=True,
                                 tablefmt="github" if markdown else "simple")
    finally:
        tabulate.MIN_PADDING = padding


def _laid_out(rows, headers, markdown=False):
    import tabulate
    return text._plain_layout(rows, list(headers), markdown, tabulate)


_RED, _GREEN = (lambda s: paint(s, "31", True)), (lambda s: paint(s, "32", True))
_CASES = {
    "ascii": ([["dense/kernel", "(4, 3)", "float32", "12"], ["b", "()", "int8", "1"],
               ["conv/bias", "(64)", "bfloat16", "64"]], ["name", "shape", "dtype", "params"]),
    "colour": ([[_RED("removed"), "a", _GREEN("1/0")], [_GREEN("added"), "bb", ""],
                ["same", "c", _RED("12/3")]], ["status", "name", "nan/inf"]),
    "wide": ([["日本語/重み", "(2)"], ["emoji 🙂👍🏽", "()"], ["e\u0301t\u00e9", "(1, 2)"],
              ["x", "ｆｕｌｌ"]], ["name", "shape"]),
    "wide_and_colour": ([[_RED("日本"), "🙂"], ["abc", _GREEN("重")]], ["a", "b"]),
    "empty_cells": ([["a", "", "1"], ["", "x", ""], ["ccc", "", ""]], ["h1", "h2", "h3"]),
    "empty_column": ([["a", "", "1", ""], ["bb", "", "2", ""]], ["name", "", "n", "last"]),
    "wide_header": ([["a", "1"], ["b", "2"]], ["a much wider header", "n"]),
    "wide_header_chars": ([["a", "1"], ["b", "2"]], ["名前", "数"]),
    "header_with_spaces": ([["a", "1"]], [" name ", "n  "]),
    "cells_with_spaces": ([["  a", "b  "], [" c ", "\td\u3000"]], ["x", "y"]),
    "control_characters": ([["a\x07b", "\x7f"], ["\x85c", "ok"]], ["x", "y"]),
    "pipes": ([["a\\|b", "c"]], ["x|y", "z"]),
    # a virama at the end: wcswidth counts the padding after it wider than the spaces it adds
    "virama": ([["नमस्", "1"], ["日\u094d", "2"], ["abcdefgh", "3"], ["\u094d", "4"]],
               ["name", "n"]),
}


@pytest.mark.parametrize("markdown", [False, True], ids=["simple", "github"])
@pytest.mark.parametrize("case", list(_CASES))
def test_plain_layout_is_tabulates_output_byte_for_byte(case, markdown):
    rows, headers = _CASES[case]
    expected = _tabulated(rows, headers, markdown)
    assert _laid_out(rows, headers, markdown) == expected
    assert _laid_out(rows * 1000, headers, markdown) == _tabulated(rows * 1000, headers, markdown)


@pytest.mark.parametrize("rows, headers", [
    ([["a\nb", "c"]], ["x", "y"]),  # multi-line: tabulate's own layout
    ([["a", "c\r"]], ["x", "y"]),
    ([["a", "b"]], ["x\ny", "z"]),
    ([["\x01", "b"]], ["x", "y"]),  # tabulate.SEPARATING_LINE
    ([["a", "b"], ["c"]], ["x", "y"]),  # ragged
    ([["a", 1]], ["x", "y"]),  # not text
    ([["a"]], []),
])
def test_plain_layout_leaves_to_tabulate_what_only_it_handles(rows, headers):
    assert _laid_out(rows, headers) is None
    big = rows * (text.LAYOUT_ROWS + 1)
    assert table(big, headers) == _tabulated(big, headers)


@pytest.mark.parametrize("markdown", [False, True], ids=["simple", "github"])
def test_table_crosses_to_the_plain_layout_above_the_threshold(monkeypatch, markdown):
    import tabulate
    calls = []
    real = tabulate.tabulate
    monkeypatch.setattr(tabulate, "tabulate", lambda *a, **k: calls.append(1) or real(*a, **k))
    rows = [[paint(f"s{i % 3}", "33", i % 2 == 0), f"block_{i}/日本"[:8 + i % 5], "(4)" * (i % 3),
             f"{i:,}", ""] for i in range(text.LAYOUT_ROWS + 1)]
    headers = ["status", "name", "shape", "n", "nan/inf"]
    at = table(rows[:-1], headers, markdown=markdown)
    assert len(calls) == 1 and at == _tabulated(rows[:-1], headers, markdown)
    above = table(rows, headers, markdown=markdown)
    assert len(calls) == 2  # _tabulated's call only: table laid it out itself
    assert above == _tabulated(rows, headers, markdown)
    assert above.startswith(at) and above.count("\n") == at.count("\n") + 1


hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings, strategies as st  # noqa: E402

_CELL = st.one_of(
    st.text(alphabet=st.sampled_from(list("ab |-_/ 12.\t") + ["日", "🙂", "\u0301", "\u200d",
                                                              "\ufe0f", "\x07", "é", "\u3000",
                                                              "\u094d", "क"]),
            max_size=8),
    st.builds(paint, st.text(alphabet="xyz日 ", max_size=4), st.sampled_from(["31", "2"]),
              st.just(True)))


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 4).flatmap(lambda n: st.tuples(
    st.lists(st.lists(_CELL, min_size=n, max_size=n), min_size=1, max_size=6),
    st.lists(_CELL, min_size=n, max_size=n))), st.booleans())
def test_plain_layout_matches_tabulate_on_any_cells(table_, markdown):
    rows, headers = table_
    assert _laid_out(rows, headers, markdown) == _tabulated(rows, headers, markdown)
