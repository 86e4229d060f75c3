"""Text from files is untrusted: escape it before it reaches a terminal or a CI log. And the
plain aligned tables every command prints."""
from __future__ import annotations

import re
import textwrap
import unicodedata
from collections.abc import Iterable, Mapping, Sequence

_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\\\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")


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


_SGR = re.compile(r"\x1b\[[0-9;]*m")  # the colour codes render_table puts around a status


def width(text: str) -> int:
    """Columns `text` takes on a terminal: colour codes take none, wide (East Asian) characters
    two, combining marks none."""
    if text.isascii() and "\x1b" not in text:
        return len(text)
    return sum(0 if unicodedata.combining(c) else
               2 if unicodedata.east_asian_width(c) in "WF" else 1
               for c in _SGR.sub("", text))


def table(rows: Iterable[Sequence[str]], headers: Sequence[str], *,
          wrap: Mapping[int, int] | None = None, markdown: bool = False) -> str:
    """Rows of text cells as aligned columns under a dashed header (or a GitHub markdown
    table). `wrap` maps a column index to a width at which its cells wrap onto more lines."""
    if wrap:
        lines: list[Sequence[str]] = []
        for row in rows:
            cells = [textwrap.wrap(cell, wrap[i], break_long_words=True) or [""]
                     if i in wrap else [cell] for i, cell in enumerate(row)]
            lines += [[c[k] if k < len(c) else "" for c in cells]
                      for k in range(max(len(c) for c in cells))]
    else:
        lines = rows if isinstance(rows, list) else list(rows)
    columns = list(zip(*lines)) if lines else [()] * len(headers)
    widths = [max(width(h), _column_width(column)) for h, column in zip(headers, columns)]
    plain = ("| " + " | ".join(f"{{:{w}}}" for w in widths) + " |" if markdown
             else "  ".join(f"{{:{w}}}" for w in widths))

    def joined(cells: Sequence[str], sep: str = "  ") -> str:
        if _ascii("".join(cells)):  # one format call; str.format pads by len
            text = plain.format(*cells)
            return text if markdown else text.rstrip()
        padded = [c + " " * (w - width(c)) for c, w in zip(cells, widths)]
        return f"| {' | '.join(padded)} |" if markdown else sep.join(padded).rstrip()

    rule = ("|" + "|".join("-" * (w + 2) for w in widths) + "|" if markdown
            else "  ".join("-" * w for w in widths))
    return "\n".join([joined(headers), rule, *(joined(line) for line in lines)])


def _ascii(text: str) -> bool:
    return text.isascii() and "\x1b" not in text


def _column_width(cells: Sequence[str]) -> int:
    if not cells:
        return 0
    if _ascii("".join(cells)):
        return max(map(len, cells))
    return max(map(width, cells))
