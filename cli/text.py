"""What every command's text output shares beyond what `tabulate` does: escaping untrusted text
before it reaches a terminal or a CI log, the colour policy, and the one call into tabulate."""
from __future__ import annotations

import difflib
import os
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from operator import itemgetter
from typing import Any, TextIO

_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\\\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")
COLOR_CHOICES = ("auto", "always", "never")


def _escape_char(match: re.Match[str]) -> str:
    ch = match.group()
    if ch == "\\":
        return "\\\\"
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe(text: object) -> str:
    """`text` with control characters, bidi overrides and backslashes escaped, and `::`
    broken up, so that no name can inject terminal escapes, lines or CI workflow commands."""
    text = str(text)
    if text.isascii() and text.isprintable() and "\\" not in text and "::" not in text:
        return text  # nothing to escape (the common case, checked in C)
    text = _UNSAFE.sub(_escape_char, text)
    text = "".join(c if unicodedata.category(c) != "Cf" else f"\\u{ord(c):04x}" for c in text)
    return text.replace("::", ":\\x3a")


def not_one_of(choices: Iterable[object], value: object) -> str:
    """The error for an option value that is none of `choices` (after the option's name),
    naming the closest choice when one is close (`shwo` -> show)."""
    names = [str(c) for c in choices]
    near = difflib.get_close_matches(str(value), names, n=1, cutoff=0.6)
    return (f"expected one of {', '.join(names)}; received {value!r}"
            + (f"; did you mean {near[0]}?" if near else ""))


BYTE_UNITS = (("B", 1), ("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30))


def byte_unit(n: float) -> tuple[str, int]:
    """(name, size) of the unit `n` bytes read best in: the largest of BYTE_UNITS not above it."""
    return next((unit for unit in reversed(BYTE_UNITS) if n >= unit[1]), BYTE_UNITS[0])


def in_unit(n: float, unit: tuple[str, int]) -> str:
    """`n` bytes as a number of `unit`: bytes whole, larger units to one decimal."""
    name, size = unit
    return f"{n:.0f}" if size == 1 else f"{n / size:.1f}"


def human_bytes(n: float) -> str:
    """`n` bytes in the unit that fits them: `512 B`, `1.5 KiB`, `3.2 GiB`."""
    unit = byte_unit(n)
    return f"{in_unit(n, unit)} {unit[0]}"


def md_escape(text: str) -> str:
    """A cell of already `safe()` text for a GitHub markdown table: `|` escaped (tabulate's
    github format does not), so a name cannot end a cell."""
    return text.replace("|", "\\|")


def colour(stream: TextIO, choice: str = "auto") -> bool:
    """Whether to colour what goes to `stream`: `--color always|never` decides; with `auto`,
    NO_COLOR (set and not empty: no-color.org) turns colour off, FORCE_COLOR (set and not empty:
    force-color.org) on, and otherwise only a terminal gets colour."""
    if choice != "auto":
        return choice == "always"
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def paint(text: str, sgr: str, on: bool) -> str:
    """`text` in the SGR colour `sgr` (e.g. "31" red) when `on`."""
    return f"\x1b[{sgr}m{text}\x1b[0m" if on and text else text


# Tables of more rows than this are laid out by `_plain_layout` rather than by tabulate: where
# tabulate passes ~0.15 s for `show`'s ten columns (0.06 s for 4 columns) on this 2-core machine
# when it is quiet, ~0.5 s when it is busy (2,000 rows: 0.06 s; 20,000: 0.7 s).
LAYOUT_ROWS = 5000


def table(rows: Iterable[Sequence[str]], headers: Sequence[str], *,
          wrap: Mapping[int, int] | None = None, markdown: bool = False) -> str:
    """Rows of cells, formatted beforehand as text, as aligned columns under a dashed header
    (or a GitHub markdown table; cells must be escaped with `md_escape` first). `wrap` maps a
    column index to a width at which its cells wrap onto more lines. Colour codes and wide
    characters are measured as the terminal shows them (tabulate with wcwidth)."""
    import tabulate

    rows = rows if isinstance(rows, list) else list(rows)
    if not wrap and len(rows) > LAYOUT_ROWS:
        text = _plain_layout(rows, list(map(str, headers)), markdown, tabulate)
        if text is not None:
            return text
    widths = [(wrap or {}).get(i) for i in range(len(headers))] if wrap else None
    padding, tabulate.MIN_PADDING = tabulate.MIN_PADDING, 0  # columns as wide as their text
    try:
        return tabulate.tabulate([list(r) for r in rows], list(headers), disable_numparse=True,
                                 tablefmt="github" if markdown else "simple",
                                 maxcolwidths=widths)
    finally:
        tabulate.MIN_PADDING = padding


def _plain_layout(rows: list[Sequence[str]], headers: list[str], markdown: bool,
                  tabulate: Any) -> str | None:
    """What `table` gets from tabulate (`tablefmt` "simple" or "github", `disable_numparse`,
    MIN_PADDING 0), byte for byte, or None for a table with what only tabulate handles
    (multi-line cells, separating lines, ragged rows, cells that are not text). It exists for
    long tables: tabulate works out a type for every cell even with numbers not parsed (~4 µs a
    cell; 4.3 s of `show`'s 6.8 s on 100,000 variables), which left-aligned text does not need;
    this lays those 100,000 rows out in ~0.3 s. tests/test_text_table.py holds it to tabulate.

    As tabulate lays such a table out: each cell stripped of surrounding whitespace (headers are
    not), left-aligned in a column as wide as its widest cell or header, measured as a terminal
    shows them (colour codes invisible, by tabulate's own `_strip_ansi`; with wcwidth, as
    `wcwidth.wcswidth` says: wide characters two columns, -1 for a control character, and,
    after a virama, spaces wider than one), the column's width taken again over the padded
    cells; "simple" joins the columns with two spaces under a dashed rule, "github" writes
    `| a | b |` under a `|---|---|` rule; each line loses its trailing whitespace."""
    count = len(headers)
    if not count or set(map(len, rows)) != {count}:
        return None
    wcswidth = tabulate.wcwidth.wcswidth if tabulate.wcwidth is not None and \
        tabulate.WIDE_CHARS_MODE else len
    strip_ansi = getattr(tabulate, "_strip_ansi", None)

    def width(text: str) -> int:
        if text.isascii() and text.isprintable():
            return len(text)  # what wcswidth says: the common case, checked in C
        return wcswidth(strip_ansi(text) if "\x1b" in text else text)

    columns, widths, specs = [], [], []
    for i, header in enumerate(headers):
        cells = list(map(itemgetter(i), rows))
        try:
            text = "|".join(cells)
        except TypeError:  # a cell that is not text: tabulate formats it
            return None
        every = f"{text}|{header}"
        if "\n" in every or "\r" in every or (i < 2 and "\x01" in text) or \
                ("\x1b" in every and strip_ansi is None):
            return None  # multi-line, maybe tabulate's SEPARATING_LINE, or ANSI to measure
        if text.isascii() and text.isprintable():  # no whitespace but spaces: strip if any
            if text.startswith(" ") or text.endswith(" ") or " |" in text or "| " in text:
                cells = list(map(str.strip, cells))
            most = max(width(header), max(map(len, cells)))
            specs.append(f"%-{most}s")  # padded as the rows are formatted
        else:  # each cell padded by its own width, as tabulate does, each distinct cell once
            cells = list(map(str.strip, cells))  # (a coloured status column holds a few)
            measured = {c: width(c) for c in set(cells)}
            most = max(width(header), *measured.values())
            padded = {c: c.ljust(most - w + len(c)) for c, w in measured.items()}
            cells = list(map(padded.__getitem__, cells))
            most = max(width(header), *map(width, padded.values()))
            specs.append("%s")
        columns.append(cells)
        widths.append(most)
    heads = [h.ljust(w - width(h) + len(h)) for h, w in zip(headers, widths)]
    if markdown:
        row = "| " + " | ".join(specs) + " |"
        lines = ["| " + " | ".join(heads) + " |", "|" + "|".join("-" * (w + 2) for w in widths)
                 + "|", *map(row.__mod__, zip(*columns))]  # ending in "|": nothing to strip
    else:
        row = "  ".join(specs)
        lines = ["  ".join(heads).rstrip(), "  ".join("-" * w for w in widths).rstrip(),
                 *map(str.rstrip, map(row.__mod__, zip(*columns)))]
    return "\n".join(lines)
