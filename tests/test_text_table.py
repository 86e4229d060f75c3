"""The aligned tables every command prints (cli/text.py `table`)."""
from weightkit.cli.text import table, width


def test_columns_align_under_a_dashed_header():
    out = table([["dense/kernel", "(4, 3)"], ["b", "()"]], ["name", "shape"])
    assert out.splitlines() == ["name          shape",
                                "------------  ------",
                                "dense/kernel  (4, 3)",
                                "b             ()"]


def test_width_ignores_colour_and_counts_wide_characters():
    assert width("\x1b[31mchanged\x1b[0m") == 7 and width("日本") == 4 and width("e\u0301") == 1
    lines = table([["\x1b[31mx\x1b[0m", "日本"], ["yyy", "z"]], ["a", "b"]).splitlines()
    # every second column starts at the same terminal column
    starts = [width(line[:line.index(second)]) for line, second in zip(lines[2:], ["日本", "z"])]
    assert starts == [5, 5]


def test_wrapped_column_continues_on_its_own_lines():
    out = table([["a", "word " * 6, "x"]], ["h", "details", "end"], wrap={1: 12}).splitlines()
    assert out[2].startswith("a  word word ") and out[2].endswith("x")
    assert [line[:3] for line in out[3:]] == ["   ", "   "] and len(out) == 5
    assert all(width(line) <= 1 + 2 + 12 + 2 + 3 for line in out)


def test_markdown_table():
    assert table([["1", "two"]], ["a", "b"], markdown=True).splitlines() == [
        "| a | b   |", "|---|-----|", "| 1 | two |"]


def test_no_rows_is_the_header():
    assert table([], ["name", "shape"]).splitlines() == ["name  shape", "----  -----"]
