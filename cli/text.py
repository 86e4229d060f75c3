"""What every command's text output shares beyond what `tabulate` does: escaping untrusted text
before it reaches a terminal or a CI log, the colour policy, and the one call into tabulate."""
from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from typing import TextIO

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
    text = _UNSAFE.sub(_escape_char, str(text))
    text = "".join(c if unicodedata.category(c) != "Cf" else f"\\u{ord(c):04x}" for c in text)
    return text.replace("::", ":\\x3a")


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


def table(rows: Iterable[Sequence[str]], headers: Sequence[str], *,
          wrap: Mapping[int, int] | None = None, markdown: bool = False) -> str:
    """Rows of cells, formatted beforehand as text, as aligned columns under a dashed header
    (or a GitHub markdown table; cells must be escaped with `md_escape` first). `wrap` maps a
    column index to a width at which its cells wrap onto more lines. Colour codes and wide
    characters are measured as the terminal shows them (tabulate with wcwidth)."""
    import tabulate

    widths = [(wrap or {}).get(i) for i in range(len(headers))] if wrap else None
    padding, tabulate.MIN_PADDING = tabulate.MIN_PADDING, 0  # columns as wide as their text
    try:
        return tabulate.tabulate([list(r) for r in rows], list(headers), disable_numparse=True,
                                 tablefmt="github" if markdown else "simple",
                                 maxcolwidths=widths)
    finally:
        tabulate.MIN_PADDING = padding
