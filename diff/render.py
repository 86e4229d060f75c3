"""Rendering a `DiffResult`: terminal table, markdown (pull-request comments) and JSON.

Names come from untrusted files: every one goes through `safe()` (no control characters,
terminal escapes, bidi overrides or `::` workflow commands reach a terminal or CI log). JSON
keeps exact names but is written with every non-ASCII and control character escaped and each
`:` that follows another `:` written as `\\u003a`, so its text holds no `::` at all.
"""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from typing import Any, TextIO

from ..cli.text import safe, table
from .engine import DiffResult, Entry
from .index_diff import ChecksumDiffResult

SCHEMA_VERSION = 1

_COLOURS = {"changed": "33", "shape_changed": "33", "dtype_changed": "33", "added": "32",
            "removed": "31", "renamed": "36", "same": "2"}
_HEADERS = ["status", "name", "shape", "dtype", "mismatched", "max abs", "max rel", "rel L2",
            "cosine", "matched by"]


@dataclass
class Target:
    """Where and how to print: the stream, colour, and whether to list unchanged entries."""
    stream: TextIO
    colour: bool = False
    all: bool = False


def colour(stream: TextIO) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set."""
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and "NO_COLOR" not in os.environ


def _num(value: float | int | None) -> str:
    if value is None:
        return ""
    if isinstance(value, int):
        return str(value)
    return f"{value:.4g}"


def _shape(entry: Entry) -> str:
    fmt = lambda s: "(" + ", ".join(map(str, s)) + ")" if s is not None else "-"  # noqa: E731
    sa, sb = fmt(entry.shape_a), fmt(entry.shape_b)
    return sa if sa == sb else f"{sa} -> {sb}"


def _dtype(entry: Entry) -> str:
    da, db = entry.dtype_a or "-", entry.dtype_b or "-"
    return da if da == db else f"{da} -> {db}"


def _name(entry: Entry, escape=safe) -> str:
    if entry.name_a is not None and entry.name_b is not None and entry.name_a != entry.name_b:
        text = f"{escape(entry.name_a)} -> {escape(entry.name_b)}"
    else:
        text = escape(entry.name)
    return text if entry.role == "weight" else f"{text} [{entry.role}]"


def _mismatched(entry: Entry) -> str:
    if entry.mismatched is None:
        return ""
    pct = 100 * entry.mismatch_fraction if entry.mismatch_fraction is not None else 0.0
    return f"{entry.mismatched:,}/{entry.size:,} ({pct:.3g}%)"


def _row(entry: Entry, name: str) -> list[str]:
    at = "" if not entry.max_abs_index else " @" + ",".join(map(str, entry.max_abs_index))
    return [entry.status, name, _shape(entry), _dtype(entry), _mismatched(entry),
            _num(entry.max_abs_diff) + at, _num(entry.max_rel_diff), _num(entry.rel_l2),
            _num(entry.cosine), entry.matched_by or ""]


def _columns(result: DiffResult) -> list[int]:
    """The columns to print: without the value statistics when no value was compared."""
    values = range(_HEADERS.index("mismatched"), _HEADERS.index("matched by"))
    return [i for i in range(len(_HEADERS))
            if not (isinstance(result, ChecksumDiffResult) and i in values)]


def _shown(result: DiffResult, everything: bool) -> list[Entry]:
    return [e for e in result.entries if everything or e.status != "same"]


def summary_line(result: DiffResult) -> str:
    """One line: verdict, counts by status, and the largest difference."""
    s = result.summary
    counts = ", ".join(f"{n} {status.replace('_', ' ')}"
                       for status, n in s["counts"].items() if n)
    verdict = "identical" if s["identical"] else "different"
    peak = "" if s["max_abs_diff"] is None else f"; max abs diff {_num(s['max_abs_diff'])}"
    opts = result.options
    if isinstance(result, ChecksumDiffResult):
        return (f"{verdict}: {counts or 'no variables'}; compared by the checksums in the index, "
                "data files not read (no value statistics, no tolerance)")
    tol = f" (atol {opts.atol:g}, rtol {opts.rtol:g})" if opts.atol or opts.rtol else ""
    return (f"{verdict}{tol}: {counts or 'no variables'}; "
            f"{s['mismatched_elements']:,} of {s['compared_elements']:,} elements differ{peak}")


def render_table(result: DiffResult, target: Target, label_a: str | None = None,
                 label_b: str | None = None) -> None:
    """The terminal report: the entries that differ (all with `target.all`) and a summary,
    under `--- A` / `+++ B` lines when labels are given."""
    if label_a is not None and label_b is not None:
        print(f"--- {safe(label_a)}\n+++ {safe(label_b)}", file=target.stream)
    rows = []
    columns = _columns(result)
    for entry in _shown(result, target.all):
        row = _row(entry, _name(entry))
        if target.colour:
            row[0] = f"\x1b[{_COLOURS[entry.status]}m{row[0]}\x1b[0m"
        rows.append([row[i] for i in columns])
    if rows:
        print(table(rows, [_HEADERS[i] for i in columns]), file=target.stream)
    print(summary_line(result), file=target.stream)
    for note in result.summary.get("notes", []):
        print(f"note: {note}", file=target.stream)


def render_text(result: DiffResult, stream: TextIO, *, all: bool = False) -> None:
    """The table and summary line on `stream`, coloured if it is a terminal."""
    render_table(result, Target(stream, colour=colour(stream), all=all))


def _md_code(text: str) -> str:
    """Markdown code span for escaped text, safe inside a table cell."""
    text = safe(text)
    ticks = "`" * (max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}".replace("|", "\\|")


def render_markdown(result: DiffResult, target: Target, label_a: str, label_b: str) -> None:
    """A pull-request comment: heading, summary line, and a table of what differs."""
    out = target.stream
    print(f"#### wdiff {_md_code(label_a)} → {_md_code(label_b)}\n", file=out)
    print(f"**{summary_line(result)}**\n", file=out)
    for note in result.summary.get("notes", []):
        print(f"> note: {note}\n", file=out)
    entries = _shown(result, target.all)
    if not entries:
        return
    columns = _columns(result)
    print("| " + " | ".join(_HEADERS[i] for i in columns) + " |", file=out)
    print("|" + "---|" * len(columns), file=out)
    for entry in entries:
        cells = _row(entry, _name(entry, _md_code))
        cells[2:] = [c.replace("|", "\\|") for c in cells[2:]]
        print("| " + " | ".join(cells[i] for i in columns) + " |", file=out)


def _json_number(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return _json_number(value)


def to_json(result: DiffResult, file_a: dict, file_b: dict) -> dict:
    """The JSON document (see `schema.json`); non-finite numbers as "inf", "-inf", "nan"."""
    return _jsonable({"schema_version": SCHEMA_VERSION, "a": file_a, "b": file_b,
                      **result.as_dict()})


def render_json(result: DiffResult, target: Target, file_a: dict, file_b: dict) -> None:
    text = json.dumps(to_json(result, file_a, file_b), indent=1, ensure_ascii=True,
                      allow_nan=False)
    while "::" in text:
        text = text.replace("::", ":\\u003a")
    print(text, file=target.stream)
