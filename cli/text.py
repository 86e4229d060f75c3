"""Text from files is untrusted: escape it before it reaches a terminal or a CI log."""
from __future__ import annotations

import re
import unicodedata

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
    text = _UNSAFE.sub(_escape_char, str(text))
    text = "".join(c if unicodedata.category(c) != "Cf" else f"\\u{ord(c):04x}" for c in text)
    return text.replace("::", ":\\x3a")
