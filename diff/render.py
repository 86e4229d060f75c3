"""Rendering reports: `wdiff`'s, `show`'s and `trend`'s as terminal tables, markdown (pull-request
comments: long tables folded in `<details>`) and JSON. The HTML report is `html.py`.

Names come from untrusted files: every one goes through `safe()` (no control characters,
terminal escapes, bidi overrides or `::` workflow commands reach a terminal or CI log). JSON
keeps exact names but is written with every non-ASCII and control character escaped and each
`:` that follows another `:` written as `\\u003a`, so its text holds no `::` at all.
"""
from __future__ import annotations

import functools
import json
import json.encoder
import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TextIO

import orjson

from ..cli.text import colour, md_escape, paint, safe, table  # noqa: F401 (colour: re-exported)
from .engine import DiffResult, Entry
from .gates import Gate, Tripped
from .index_diff import ChecksumDiffResult
from .rollup import DiffGroup, order, rollup_diff

SCHEMA_VERSION = 2  # 2: "variables" for "entries", variables_a/b for tensors_a/b, views, gates
FOLD_ROWS = 20  # markdown tables longer than this are folded in <details>

_COLOURS = {"changed": "33", "shape_changed": "33", "dtype_changed": "33", "added": "32",
            "removed": "31", "renamed": "36", "same": "2", "folded": "2"}
_HEADERS = ["status", "name", "shape", "dtype", "mismatched", "max abs", "max rel", "rel L2",
            "cosine", "matched by"]
_GROUP_HEADERS = ["status", "variables", "changed", "mismatched", "max abs", "max rel",
                  "rel L2", "cosine"]
# per-variable numbers of the diff JSON: what --sort and --fail-if accept
DIFF_NUMBERS = ("size", "mismatched", "mismatch_fraction", "max_abs_diff", "max_rel_diff",
                "mean_abs_diff", "rms_diff", "rel_l2", "cosine", "nan_a", "nan_b", "inf_a",
                "inf_b")


@dataclass
class View:
    """Which rows a report shows: per variable or rolled up `by` layer or module, sorted by a
    field (magnitudes, largest first), the first `top`; `all` includes unchanged variables."""
    by: str = "variable"
    sort: str | None = None
    top: int | None = None
    all: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"by": self.by, "sort": self.sort, "top": self.top}


@dataclass
class Target:
    """Where and how to print: the stream, colour, which rows, and the gates' results."""
    stream: TextIO
    colour: bool = False
    all: bool = False
    view: View | None = None
    gates: list[Tripped] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.view is None:
            self.view = View(all=self.all)


def num(value: float | int | None) -> str:
    """A statistic in a table cell: integers as they are, floats to 4 significant digits."""
    if value.__class__ is float:  # most cells (4 a row in `show`): one check, not three
        return f"{value:.4g}"
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    return f"{value:.4g}"


def shape_text(shape: Sequence[int] | None) -> str:
    return "-" if shape is None else "(" + ", ".join(map(str, shape)) + ")"


def _shape(entry: Entry) -> str:
    sa, sb = shape_text(entry.shape_a), shape_text(entry.shape_b)
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


def _mismatched(mismatched: int | None, fraction: float | None, size: int) -> str:
    if mismatched is None:
        return ""
    pct = 100 * fraction if fraction is not None else 0.0
    return f"{mismatched:,}/{size:,} ({pct:.3g}%)"


def _row(entry: Entry, name: str) -> list[str]:
    at = "" if not entry.max_abs_index else " @" + ",".join(map(str, entry.max_abs_index))
    matched = entry.matched_by or ""
    if entry.transform:
        matched += f": {entry.transform}"
    if entry.worst_channel:
        w = entry.worst_channel
        at += f" (worst channel {w['index']}: {num(w['max_abs_diff'])})"
    return [entry.status, name, _shape(entry), _dtype(entry),
            _mismatched(entry.mismatched, entry.mismatch_fraction, entry.size),
            num(entry.max_abs_diff) + at, num(entry.max_rel_diff), num(entry.rel_l2),
            num(entry.cosine), matched]


def _group_row(group: DiffGroup) -> list[str]:
    return [group.status, str(group.variables), str(group.variables - group.counts["same"]),
            _mismatched(group.mismatched, group.mismatch_fraction, group.size),
            num(group.max_abs_diff), num(group.max_rel_diff), num(group.rel_l2), num(group.cosine)]


def _columns(result: DiffResult) -> list[int]:
    """The columns to print: without the value statistics when no value was compared."""
    values = range(_HEADERS.index("mismatched"), _HEADERS.index("matched by"))
    return [i for i in range(len(_HEADERS))
            if not (isinstance(result, ChecksumDiffResult) and i in values)]


def diff_rows(result: DiffResult, view: View) -> list[Entry] | list[DiffGroup]:
    """The rows a diff report lists: entries that differ (all with `view.all`) or their groups,
    ordered and cut as `view` says. Folded entries (export diffs) count as not different."""
    if view.by != "variable":
        rows: list = [g for g in rollup_diff(result.entries, view.by)
                      if view.all or g.status != "same"]
    else:
        rows = [e for e in result.entries if view.all or e.status not in ("same", "folded")]
    return order(rows, view.sort, view.top)


def cut_line(shown: int, total: int, top: int | None, what: str = "rows") -> str | None:
    """`3 of 21 rows shown (--top 3)` when --top left rows out, else None."""
    if top is None or shown >= total:
        return None
    return f"{shown:,} of {total:,} {what} shown (--top {top})"


def _diff_cut(result: DiffResult, view: View) -> str | None:
    if view.top is None:
        return None
    total = len(diff_rows(result, replace(view, top=None)))
    return cut_line(min(view.top, total), total, view.top)


def summary_line(result: DiffResult) -> str:
    """One line: verdict, counts by status, and the largest difference."""
    s = result.summary
    counts = ", ".join(f"{n:,} {status.replace('_', ' ')}"
                       for status, n in s["counts"].items() if n)
    verdict = "identical" if s["identical"] else "different"
    peak = "" if s["max_abs_diff"] is None else f"; max abs diff {num(s['max_abs_diff'])}"
    opts = result.options
    if isinstance(result, ChecksumDiffResult):
        return (f"{verdict}: {counts or 'no variables'}; compared by the checksums in the index, "
                "data files not read (no value statistics, no tolerance)")
    tol = f" (atol {opts.atol:g}, rtol {opts.rtol:g})" if opts.atol or opts.rtol else ""
    export = ""
    if "export" in s:
        x = s["export"]
        export = (f"; {'A' if x['side'] == 'a' else 'B'} is an export of "
                  f"{'B' if x['side'] == 'a' else 'A'}: {x['paired']} weights paired, "
                  f"{x['folded']} folded, {len(x['structural'])} structural constants not "
                  "compared")
        if x.get("quantized_as_stored"):
            export += (f"; {x['quantized_as_stored']} quantized weights compared as stored "
                       "integers (--dequantize compares their real values)")
    return (f"{verdict}{tol}: {counts or 'no variables'}; "
            f"{s['mismatched_elements']:,} of {s['compared_elements']:,} elements differ{peak}"
            f"{export}")


def _diff_table(result: DiffResult, view: View, colour_on: bool, markdown: bool) -> str | None:
    rows = diff_rows(result, view)
    if not rows:
        return None
    escape = md_code if markdown else safe
    cells = []
    if view.by != "variable":
        headers = [_GROUP_HEADERS[0], view.by, *_GROUP_HEADERS[1:]]
        for g in rows:
            row = _group_row(g)  # type: ignore[arg-type]
            row.insert(1, escape(g.name))
            cells.append(row)
        status_of = [g.status for g in rows]
    else:
        columns = _columns(result)
        headers = [_HEADERS[i] for i in columns]
        for e in rows:
            row = _row(e, _name(e, escape))  # type: ignore[arg-type]
            cells.append([row[i] for i in columns])
        status_of = [e.status for e in rows]
    for row, status in zip(cells, status_of):
        row[0] = paint(row[0], _COLOURS[status], colour_on)
        if markdown:
            row[2:] = [md_escape(c) for c in row[2:]]
    return table(cells, headers, markdown=markdown)


def render_table(result: DiffResult, target: Target, label_a: str | None = None,
                 label_b: str | None = None) -> None:
    """The terminal report: the rows that differ (all with `--all`) and a summary, under
    `--- A` / `+++ B` lines when labels are given, then the gates that tripped."""
    if label_a is not None and label_b is not None:
        print(f"--- {safe(label_a)}\n+++ {safe(label_b)}", file=target.stream)
    text = _diff_table(result, target.view, target.colour, markdown=False)  # type: ignore[arg-type]
    if text:
        print(text, file=target.stream)
    cut = _diff_cut(result, target.view)  # type: ignore[arg-type]
    if cut:
        print(cut, file=target.stream)
    print(summary_line(result), file=target.stream)
    for note in result.summary.get("notes", []):
        print(f"note: {safe(note)}", file=target.stream)
    print_gates(target.gates, target.stream, target.colour)


def render_text(result: DiffResult, stream: TextIO, *, all: bool = False) -> None:
    """The table and summary line on `stream`, coloured if it is a terminal."""
    render_table(result, Target(stream, colour=colour(stream), all=all))


def md_code(text: str) -> str:
    """Markdown code span for escaped text, safe inside a table cell."""
    text = safe(text)
    ticks = "`" * (max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}".replace("|", "\\|")



def fold(markdown_table: str, rows: int, what: str) -> str:
    """A markdown table, folded in `<details>` when it has more than FOLD_ROWS rows, so that a
    pull-request comment stays readable."""
    if rows <= FOLD_ROWS:
        return markdown_table
    return (f"<details><summary>{rows} {what} (click to expand)</summary>\n\n"
            f"{markdown_table}\n\n</details>")


def render_markdown(result: DiffResult, target: Target, label_a: str, label_b: str) -> None:
    """A pull-request comment: heading, summary line, a table of what differs (folded when
    long), and the gates that tripped."""
    out = target.stream
    print(f"#### wdiff {md_code(label_a)} → {md_code(label_b)}\n", file=out)
    print(f"**{summary_line(result)}**\n", file=out)
    for note in result.summary.get("notes", []):
        print(f"> note: {md_escape(note)}\n",
              file=out)
    text = _diff_table(result, target.view, False, markdown=True)  # type: ignore[arg-type]
    if text:
        n = len(text.splitlines()) - 2
        what = "variables" if target.view.by == "variable" else f"{target.view.by}s"  # type: ignore[union-attr]
        print(fold(text, n, what), file=out)
    cut = _diff_cut(result, target.view)  # type: ignore[arg-type]
    if cut:
        print(f"\n{cut}", file=out)
    markdown_gates(target.gates, out)


# --- gates -------------------------------------------------------------------------------------

def gate_lines(results: Sequence[Tripped], limit: int = 10) -> list[str]:
    """One line per tripped gate: the gate, how many rows, the first `limit` with values."""
    lines = []
    for r in results:
        if not r.rows:
            continue
        shown = ", ".join(f"{safe(name)} ({num(v)})" for name, v in r.rows[:limit])
        more = f", and {len(r.rows) - limit} more" if len(r.rows) > limit else ""
        lines.append(f"gate {r.gate} tripped by {len(r.rows)}: {shown}{more}")
    return lines


def print_gates(results: Sequence[Tripped], stream: TextIO, colour_on: bool = False) -> None:
    for line in gate_lines(results):
        print(paint(line, "31", colour_on), file=stream)


def markdown_gates(results: Sequence[Tripped], stream: TextIO) -> None:
    lines = gate_lines(results, limit=50)
    if lines:
        print("\n**Gates tripped:**\n", file=stream)
        for line in lines:
            print(f"- {md_escape(line)}", file=stream)


def gates_json(gates: Sequence[Gate], results: Sequence[Tripped]) -> list[dict] | None:
    return [r.as_dict() for r in results] if gates else None


# --- JSON --------------------------------------------------------------------------------------

def _json_number(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def jsonable(value: Any) -> Any:
    """Plain data with non-finite floats as the strings "inf", "-inf", "nan"."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return _json_number(value)



def to_json(result: DiffResult, file_a: dict, file_b: dict, view: View | None = None,
            gates: list[dict] | None = None) -> dict:
    """The JSON document (see `schema.json`); non-finite numbers as "inf", "-inf", "nan".
    "variables" lists every compared variable (in the view's order, cut to its `top`);
    with a rollup, "groups" lists the view's groups."""
    doc = result.as_dict()
    if view is not None:
        rows = diff_rows(result, View(view.by, view.sort, view.top, all=True))
        if view.by != "variable":
            doc["groups"] = [g.as_dict() for g in rows]  # type: ignore[union-attr]
        else:
            doc["variables"] = [e.as_dict() for e in rows]  # type: ignore[union-attr]
        doc["view"] = view.as_dict()
    if gates is not None:
        doc["gates"] = gates
    return jsonable({"schema_version": SCHEMA_VERSION, "a": file_a, "b": file_b, **doc})


def dump_json(doc: Any, stream: TextIO) -> None:
    """`doc` as indented JSON with every non-ASCII character escaped and no `::` in its text
    (`:\\u003a` instead). Each object of a top-level list of objects takes one line
    (`_rows_json`). A part of `doc` holding non-finite floats or numpy numbers is written as
    `jsonable` says. Written piece by piece: the 100,000 rows of a `show --json` in pieces of
    `ROWS_PER_PIECE`, never the whole text in memory (it was four copies of 20 MB, 0.1 s)."""
    for piece in _pieces(doc):
        while "::" in piece:  # (no piece begins or ends with ':', so none spans two)
            piece = piece.replace("::", ":\\u003a")
        stream.write(piece)
    stream.write("\n")


ROWS_PER_PIECE = 4096


def _pieces(doc: Any) -> Iterator[str]:
    if not isinstance(doc, dict):
        yield _indented(doc, "\n")
        return
    yield "{"
    for n, (key, value) in enumerate(doc.items()):
        yield f"{',' if n else ''}\n {json.dumps(key, ensure_ascii=True)}: "
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            yield "[\n  "
            for start in range(0, len(value), ROWS_PER_PIECE):
                yield (",\n  " if start else "") + _rows_json(value[start:start + ROWS_PER_PIECE])
            yield "\n ]"
        else:
            yield _indented(value, "\n ")
    yield "\n}"


def _indented(value: Any, newline: str) -> str:
    """`value` indented by one space a level, its lines joined by `newline`."""
    try:
        text = json.dumps(value, indent=1, ensure_ascii=True, allow_nan=False)
    except (TypeError, ValueError):  # non-finite floats (and numpy numbers)
        text = json.dumps(jsonable(value), indent=1, ensure_ascii=True, allow_nan=False)
    return text if newline == "\n" else text.replace("\n", newline)


def _rows_json(rows: list[dict]) -> str:
    """The rows' JSON, one object per line (joined by ",\\n  "), each written without spaces
    as `json.dumps(row, ensure_ascii=True, allow_nan=False, separators=(",", ":"))` writes it
    (numbers may be spelled otherwise: 1e-07 as 1e-7), or as it writes `jsonable(row)` when
    the row holds non-finite floats or numpy numbers. orjson writes them: the C encoder of
    `json` takes 0.57 s for the 100,000 rows of a `show --json`, orjson 0.08 s. orjson writes
    NaN and Inf as null and UTF-8 as it is, so a row whose text has a non-ASCII byte, or a
    null that is not one of its None values (`_nones`), is written by `json`, as is one that
    orjson refuses (numpy numbers, ints past 64 bits, keys that are not strings)."""
    dumps = orjson.dumps
    try:  # (decoded at once: holding orjson's bytes objects took 0.5 s for 100,000 rows)
        parts = [dumps(row).decode("utf-8") for row in rows]
    except orjson.JSONEncodeError:
        parts = [_row_json(row) for row in rows]
    for i, text in enumerate(parts):
        if not text.isascii() or "null" in text and text.count("null") != _nones(rows[i]):
            parts[i] = _strict_row(rows[i])
    return ",\n  ".join(parts)


def _row_json(row: dict) -> str:
    try:
        return orjson.dumps(row).decode("utf-8")
    except orjson.JSONEncodeError:
        return _strict_row(row)


def _nones(row: dict) -> int:
    """How many of the row's own values are None. orjson writes each as one `null`, and a
    NaN or Inf anywhere, a nested None or a `null` inside a string as one more: a row whose
    text has no more `null`s than this holds no number JSON lacks."""
    return [*row.values()].count(None)


def _strict_row(row: dict) -> str:
    """The row on one line by the C encoder of `json` (made once: `json.dumps` makes one per
    call, half a row's time); as `jsonable` says when it holds what JSON cannot."""
    encode = _strict_encoder()
    try:
        return encode(row)
    except (TypeError, ValueError):
        return encode(jsonable(row))


@functools.cache
def _strict_encoder() -> Callable[[Any], str]:
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return json.JSONEncoder(ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode
    encoder = make(None, _unencodable, json.encoder.encode_basestring_ascii, None, ":", ",",
                   False, False, False)  # markers, default, str, indent, separators, sort,
    return lambda obj: "".join(encoder(obj, 0))  # (skipkeys, allow_nan)


def _unencodable(obj: Any) -> Any:
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def render_json(result: DiffResult, target: Target, file_a: dict, file_b: dict) -> None:
    gates = [r.as_dict() for r in target.gates] if target.gates else None
    dump_json(to_json(result, file_a, file_b, target.view, gates), target.stream)


# --- trend -------------------------------------------------------------------------------------

TREND_SCHEMA_VERSION = 1
_SPARK = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float | int | None]) -> str:
    """One character per value, scaled to the largest finite one: ▁..█; `·` exactly 0, `!`
    NaN or Inf, a space where there is no value."""
    finite = [abs(v) for v in values if v is not None and math.isfinite(v)]
    top = max(finite, default=0.0)
    out = []
    for v in values:
        if v is None:
            out.append(" ")
        elif not math.isfinite(v):
            out.append("!")
        elif v == 0 or top == 0:
            out.append("·")
        else:
            out.append(_SPARK[min(len(_SPARK) - 1, int(abs(v) / top * (len(_SPARK) - 1) + 0.5))])
    return "".join(out)


def _final(values: Sequence[Any]) -> str:
    """The value at the last checkpoint ("-" when there is none: absent, or no finite value)."""
    return "-" if values[-1] is None else num(values[-1])


def _peak(values: Sequence[Any]) -> Any:
    present = [v for v in values if v is not None]
    if not present:
        return None
    return max(present, key=lambda v: math.inf if math.isnan(v) else abs(v))


def trend_flags(row: Any, colour_on: bool = False) -> str:
    flags = []
    if row.frozen:
        flags.append(paint("frozen", "36", colour_on))
    if row.first_nan_step is not None:
        flags.append(paint(f"NaN@{row.first_nan_step}", "31", colour_on))
    if row.first_inf_step is not None:
        flags.append(paint(f"Inf@{row.first_inf_step}", "31", colour_on))
    if row.exploding:
        flags.append(paint("exploding", "33", colour_on))
    return " ".join(flags)


def _trend_cells(rows: Sequence[Any], by: str, escape: Any, colour_on: bool
                 ) -> tuple[list[str], list[list[str]]]:
    headers = [by, "shape" if by == "variable" else "variables", "Δ prev last", "Δ prev max",
               "Δ first last", "norm first → last", "Δ prev by step", "flags"]
    cells = []
    for r in rows:
        name = escape(r.name) + ("" if by != "variable" or r.role == "weight" else f" [{r.role}]")
        first = next((v for v in r.l2_norm if v is not None), None)
        norm = f"{'-' if first is None else num(first)} → {_final(r.l2_norm)}"
        cells.append([name, shape_text(r.shape) if by == "variable" else str(r.variables),
                      _final(r.rel_l2_prev), num(_peak(r.rel_l2_prev)), _final(r.rel_l2_first),
                      norm, sparkline(r.rel_l2_prev[1:]), trend_flags(r, colour_on)])
    return headers, cells


def trend_summary_line(result: Any) -> str:
    s = result.summary()
    steps = ", ".join(str(n) for n in result.steps)
    parts = [f"{s['frozen']} frozen", f"{s['exploding']} exploding"]
    if s["with_nan"]:
        parts.append(f"{s['with_nan']} with NaN (first at step {s['first_nan_step']})")
    if s["with_inf"]:
        parts.append(f"{s['with_inf']} with Inf (first at step {s['first_inf_step']})")
    return (f"{s['checkpoints']} checkpoints (steps {steps}), {s['variables']} "
            f"variable{'s' * (s['variables'] != 1)}: "
            + ", ".join(parts))


def trend_rows(result: Any, view: View) -> list[Any]:
    from .trend import rollup_trend
    rows = result.series if view.by == "variable" else rollup_trend(result.series, view.by)
    return order(rows, view.sort, view.top)


def render_trend_text(result: Any, target: Target) -> None:
    out = target.stream
    for c in result.checkpoints:
        print(f"step {c['step']}: {safe(c['path'])} ({c['format']})", file=out)
    headers, cells = _trend_cells(trend_rows(result, target.view), target.view.by, safe,
                                  target.colour)
    if cells:
        print(table(cells, headers), file=out)
    print(trend_summary_line(result), file=out)
    print_gates(target.gates, out, target.colour)


def render_trend_markdown(result: Any, target: Target) -> None:
    out = target.stream
    view = target.view
    first, last = result.checkpoints[0], result.checkpoints[-1]
    print(f"#### weightkit trend {md_code(first['path'])} … {md_code(last['path'])}\n", file=out)
    print(f"**{trend_summary_line(result)}**\n", file=out)
    rows = trend_rows(result, view)
    headers, cells = _trend_cells(rows, view.by, md_code, False)
    what = "variables" if view.by == "variable" else f"{view.by}s"
    if cells:
        cells = [[c if i == 0 else md_escape(c) for i, c in enumerate(row)] for row in cells]
        print(fold(table(cells, headers, markdown=True), len(cells), what), file=out)
        steps = [str(n) for n in result.steps[1:]]
        per_step = [[md_code(r.name), *(num(v) for v in r.rel_l2_prev[1:])] for r in rows]
        print(f"\n<details><summary>relative L2 change from the previous checkpoint, by step"
              f"</summary>\n\n{table(per_step, [view.by, *steps], markdown=True)}\n\n</details>",
              file=out)
    markdown_gates(target.gates, out)


def trend_json(result: Any, view: View | None = None, gates: list[dict] | None = None) -> dict:
    """The JSON document of `trend` (see `schema-trend.json`)."""
    doc = {"schema_version": TREND_SCHEMA_VERSION, **result.as_dict()}
    if view is not None:
        rows = trend_rows(result, view)
        key = "variables" if view.by == "variable" else "groups"
        doc[key] = [r.as_dict() for r in rows]
        doc["view"] = view.as_dict()
    if gates is not None:
        doc["gates"] = gates
    return jsonable(doc)
