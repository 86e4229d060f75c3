"""The tables every command prints (cli/text.py `table`, through tabulate) and the colour policy."""
import io

import pytest
from wcwidth import wcswidth

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
