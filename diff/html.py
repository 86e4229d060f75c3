"""`--format html`: one self-contained HTML file per report (wdiff, show, trend) that opens
offline — plotly's JavaScript, the data and the styles are inline, nothing is fetched.

Charts are drawn by plotly (the optional extra `weightkit[report]`, imported only here): per
variable histograms (wdiff: A and B overlaid on shared bins), a per-layer change chart (relative
L2 combined from exact sums), |A−B| heatmaps of 2-D and larger kernels (as rows × last axis,
downsampled by taking the largest |Δ| of each block, so that a single changed weight stays
visible), and trend lines per layer over a run; then the same tables as the text report. The
data behind the pictures is computed here in chunks (two passes per histogram: range, then
counts), on the engine's worker pool, for the variables the report draws (at most
`MAX_HISTOGRAMS` and `MAX_HEATMAPS`, the largest changes first).
"""
from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..cli.text import safe
from ..converters.deps import require
from ..converters.dtypes import is_string
from ..converters.store import Store, Tensor
from .engine import DiffResult, pieces
from .render import (Target, diff_rows, gate_lines, num, shape_text, sparkline, summary_line,
                     trend_flags, trend_rows, trend_summary_line)
from .rollup import order, rollup_diff
from .workers import run_all

BINS = 64
MAX_HISTOGRAMS = 24
MAX_HEATMAPS = 12
HEATMAP_CELLS = 64  # blocks per side at most
_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;
max-width:1200px;padding:0 16px;color:#1f2328;background:#fff}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px;border-bottom:1px solid
#d0d7de;padding-bottom:4px}.meta{color:#59636e;margin:0 0 12px}.summary{font-weight:600}
.gates{color:#b42318;font-weight:600}table{border-collapse:collapse;font-size:12.5px;width:100%}
th,td{border:1px solid #d0d7de;padding:3px 6px;text-align:left;white-space:nowrap}
th{background:#f6f8fa;position:sticky;top:0}td.n{text-align:right;font-variant-numeric:
tabular-nums}tr:nth-child(even) td{background:#fbfcfd}.grid{display:grid;grid-template-columns:
repeat(auto-fill,minmax(360px,1fr));gap:12px}.chart{border:1px solid #d0d7de;border-radius:6px;
padding:4px}.note{color:#59636e;font-size:12.5px}.flag{color:#b42318}.wrap{overflow-x:auto}
"""
_CONFIG = {"displaylogo": False, "responsive": True,
           "modeBarButtonsToRemove": ["sendDataToCloud"]}


# --- pages -------------------------------------------------------------------------------------

def _esc(text: Any) -> str:
    return html.escape(safe(text))


class _Page:
    """Sections of HTML and plotly figures, assembled into one file with plotly.js inline."""

    def __init__(self, title: str):
        self.title = title
        self.parts: list[str] = []
        self.go = require("plotly.graph_objects")
        self.pio = require("plotly.io")

    def add(self, markup: str) -> None:
        self.parts.append(markup)

    def figure(self, fig: Any, height: int = 320) -> str:
        fig.update_layout(template="none", height=height, margin=dict(l=56, r=16, t=36, b=44),
                          font=dict(size=11), paper_bgcolor="white", plot_bgcolor="white")
        return ('<div class="chart">' +
                self.pio.to_html(fig, full_html=False, include_plotlyjs=False,
                                 config=_CONFIG, default_height=f"{height}px") + "</div>")

    def render(self) -> str:
        from plotly.offline import get_plotlyjs
        js = get_plotlyjs().replace("</script", "<\\/script")
        return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
                f"<title>{_esc(self.title)}</title><style>{_CSS}</style>"
                f"<script>{js}</script></head><body>\n" + "\n".join(self.parts) +
                "\n</body></html>\n")


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], numeric: set[int]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td class="n">{c}</td>' if i in numeric else f"<td>{c}</td>"
                         for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f'<div class="wrap"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _gates(target: Target) -> str:
    lines = gate_lines(target.gates, limit=50)
    return "".join(f'<p class="gates">{html.escape(line)}</p>' for line in lines)


# --- data for the pictures ---------------------------------------------------------------------

def _finite_range(tensor: Tensor) -> tuple[float, float] | None:
    lo, hi = math.inf, -math.inf
    for chunk in tensor.iter_chunks():
        w = np.asarray(np.abs(chunk) if chunk.dtype.kind == "c" else chunk, dtype=np.float64)
        w = w[np.isfinite(w)]
        if w.size:
            lo, hi = min(lo, float(w.min())), max(hi, float(w.max()))
    return (lo, hi) if lo <= hi else None


def _counts(tensor: Tensor, lo: float, hi: float) -> list[int]:
    counts = np.zeros(BINS, np.int64)
    for chunk in tensor.iter_chunks():
        w = np.asarray(np.abs(chunk) if chunk.dtype.kind == "c" else chunk, dtype=np.float64)
        counts += np.histogram(w[np.isfinite(w)], bins=BINS, range=(lo, hi))[0]
    return counts.tolist()


def _histogram_job(tensors: tuple[Tensor, ...], progress: Any) -> dict | None:
    """Counts in BINS shared bins over the finite values of each tensor (two passes)."""
    tensors = tuple(t for t in tensors if t is not None and not is_string(t.dtype) and t.size)
    ranges = [r for r in (_finite_range(t) for t in tensors) if r is not None]
    if not ranges:
        return None
    lo, hi = min(r[0] for r in ranges), max(r[1] for r in ranges)
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, BINS + 1)
    return {"edges": edges.tolist(), "counts": [_counts(t, lo, hi) for t in tensors]}


def _heatmap_job(ta: Tensor, tb: Tensor, progress: Any) -> dict:
    """max |a−b| over blocks of the (rows = product of leading axes) × (last axis) matrix."""
    cols = ta.shape[-1]
    rows = ta.size // cols
    br, bc = math.ceil(rows / min(rows, HEATMAP_CELLS)), math.ceil(cols / min(cols, HEATMAP_CELLS))
    nr, nc = math.ceil(rows / br), math.ceil(cols / bc)
    grid = np.zeros(nr * nc, np.float64)
    offset = 0
    for a, b in pieces(ta.iter_chunks(), tb.iter_chunks()):
        d = np.abs(a.astype(np.float64) - b.astype(np.float64))
        d[~np.isfinite(d)] = np.nan  # NaN/Inf differences drawn as gaps
        flat = np.arange(offset, offset + a.size)
        np.fmax.at(grid, (flat // cols // br) * nc + (flat % cols) // bc, d)
        offset += a.size
    return {"z": grid.reshape(nr, nc).tolist(), "block": [br, bc], "rows": rows, "cols": cols}


# --- wdiff -------------------------------------------------------------------------------------

def diff_report(result: DiffResult, target: Target, file_a: dict, file_b: dict,
                stores: tuple[Store, Store] | None) -> str:
    """The HTML report of a diff (`stores` are the two open stores, for the pictures)."""
    page = _Page(f"wdiff {file_a['path']} → {file_b['path']}")
    page.add(f"<h1>wdiff</h1><p class=\"meta\">A: {_esc(file_a['path'])} ({_esc(file_a['format'])})"
             f"<br>B: {_esc(file_b['path'])} ({_esc(file_b['format'])})</p>"
             f'<p class="summary">{_esc(summary_line(result))}</p>{_gates(target)}')
    go = page.go
    compared = [e for e in result.entries if e.rel_l2 is not None]
    layers = rollup_diff(result.entries, "layer")
    changed_layers = [g for g in layers if g.rel_l2 is not None]
    if changed_layers:
        fig = go.Figure(go.Bar(
            x=[g.name for g in changed_layers], y=[_finite(g.rel_l2) for g in changed_layers],
            customdata=[[g.variables, g.mismatched or 0] for g in changed_layers],
            hovertemplate="%{x}<br>relative L2 %{y:.4g}<br>%{customdata[0]} variables, "
                          "%{customdata[1]} elements differ<extra></extra>",
            marker_color="#d97706"))
        positive = [g.rel_l2 for g in changed_layers if g.rel_l2]
        fig.update_layout(title="change per layer: ‖A−B‖ / ‖A‖ (log scale)",
                          yaxis=_log_axis(bool(positive)), xaxis_tickangle=-45)
        page.add("<h2>Change per layer</h2>" + page.figure(fig, 360))
    rows = diff_rows(result, target.view)  # type: ignore[arg-type]
    page.add(f"<h2>{'Variables' if target.view.by == 'variable' else target.view.by.title() + 's'}"
             "</h2>" + _diff_table(result, rows, target.view.by))  # type: ignore[union-attr]
    if stores is None:
        return page.render()
    store_a, store_b = stores
    drawn = order([e for e in compared if e.status != "same"] or compared, "rel_l2",
                  MAX_HISTOGRAMS)
    hist = run_all(_histogram_job, [((store_a[e.name_a], store_b[e.name_b]),) for e in drawn],
                   [store_a[e.name_a].nbytes * 4 for e in drawn])
    charts = []
    for e, h in zip(drawn, hist):
        if h is None:
            continue
        centers = [(x + y) / 2 for x, y in zip(h["edges"], h["edges"][1:])]
        fig = go.Figure([go.Bar(x=centers, y=h["counts"][0], name="A", opacity=0.55,
                                marker_color="#2563eb"),
                         go.Bar(x=centers, y=h["counts"][1], name="B", opacity=0.55,
                                marker_color="#dc2626")])
        fig.update_layout(barmode="overlay", bargap=0, title=_short(e.name),
                          legend=dict(orientation="h", y=1.12, x=1, xanchor="right"))
        charts.append(page.figure(fig, 260))
    if charts:
        page.add(f"<h2>Histograms, A and B overlaid</h2><p class=\"note\">The {len(charts)} "
                 "variables that changed most (relative L2), on shared bins of their finite "
                 "values.</p><div class=\"grid\">" + "".join(charts) + "</div>")
    kernels = order([e for e in compared if len(e.shape_a or ()) >= 2 and e.status == "changed"
                     and e.size], "rel_l2", MAX_HEATMAPS)
    maps = run_all(_heatmap_job, [(store_a[e.name_a], store_b[e.name_b]) for e in kernels],
                   [store_a[e.name_a].nbytes * 2 for e in kernels])
    charts = []
    for e, m in zip(kernels, maps):
        fig = go.Figure(go.Heatmap(z=m["z"], colorscale="Inferno", colorbar=dict(title="|Δ|"),
                                   hovertemplate="block %{y}, %{x}<br>max |Δ| %{z:.3g}"
                                                 "<extra></extra>"))
        fig.update_layout(title=f"{_short(e.name)} {shape_text(e.shape_a)}",
                          yaxis=dict(autorange="reversed", title=f"rows ÷ {m['block'][0]}"),
                          xaxis=dict(title=f"last axis ÷ {m['block'][1]}"))
        charts.append(page.figure(fig, 320))
    if charts:
        page.add("<h2>|A − B| heatmaps</h2><p class=\"note\">Kernels of two axes or more, as "
                 "(product of the leading axes) × (last axis), each cell the largest |Δ| of its "
                 "block.</p><div class=\"grid\">" + "".join(charts) + "</div>")
    return page.render()


def _short(name: str, limit: int = 60) -> str:
    text = safe(name)
    return text if len(text) <= limit else "…" + text[-limit + 1:]


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _diff_table(result: DiffResult, rows: Sequence[Any], by: str) -> str:
    if by != "variable":
        headers = ["status", by, "variables", "changed", "mismatched", "max abs", "max rel",
                   "rel L2", "cosine"]
        cells = [[g.status, _esc(g.name), str(g.variables), str(g.variables - g.counts["same"]),
                  _esc(_count(g.mismatched, g.size)), num(g.max_abs_diff), num(g.max_rel_diff),
                  num(g.rel_l2), num(g.cosine)] for g in rows]
        return _table(headers, cells, set(range(2, 9)))
    headers = ["status", "name", "shape", "dtype", "mismatched", "max abs", "max rel", "rel L2",
               "cosine", "matched by"]
    cells = []
    for e in rows:
        name = _esc(e.name if e.name_b in (None, e.name_a) or e.name_a is None
                    else f"{e.name_a} -> {e.name_b}")
        cells.append([e.status, name + ("" if e.role == "weight" else f" [{e.role}]"),
                      _esc(shape_text(e.shape_a or e.shape_b)), _esc(e.dtype_a or e.dtype_b),
                      _esc(_count(e.mismatched, e.size)), num(e.max_abs_diff),
                      num(e.max_rel_diff), num(e.rel_l2), num(e.cosine), e.matched_by or ""])
    return _table(headers, cells, set(range(4, 9)))


def _count(mismatched: int | None, size: int) -> str:
    return "" if mismatched is None else f"{mismatched:,}/{size:,}"


# --- show --------------------------------------------------------------------------------------

def show_report(store: Store, doc: dict, rows: list[dict], by: str) -> str:
    page = _Page(f"weightkit show {doc['file']}")
    t = doc["totals"]
    page.add(f"<h1>weightkit show</h1><p class=\"meta\">{_esc(doc['file'])} "
             f"({_esc(doc['format'])})</p><p class=\"summary\">{t['variables']} "
             f"variable{'s' * (t['variables'] != 1)}, "
             f"{t['parameters']:,} parameters, {t['bytes']:,} bytes</p>")
    go = page.go
    layers = {}
    for r in doc["variables"]:
        layer = r["name"].rpartition("/")[0] or r["name"]
        layers[layer] = layers.get(layer, 0) + r["parameters"]
    if layers:
        fig = go.Figure(go.Bar(x=list(layers), y=list(layers.values()), marker_color="#2563eb",
                               hovertemplate="%{x}<br>%{y:,} parameters<extra></extra>"))
        fig.update_layout(title="parameters per layer", xaxis_tickangle=-45)
        page.add("<h2>Layers</h2>" + page.figure(fig, 320))
    headers = ([by, "variables", "params"] if by != "variable" else
               ["name", "shape", "dtype", "params"]) + ["min", "max", "mean", "std", "zeros %",
                                                        "nan", "inf"]
    cells = []
    for r in rows:
        head = ([_esc(r["name"]), str(r["variables"]), f"{r['parameters']:,}"] if by != "variable"
                else [_esc(r["name"]) + ("" if r["role"] == "weight" else f" [{r['role']}]"),
                      _esc(shape_text(r["shape"])), _esc(r["dtype"]), f"{r['parameters']:,}"])
        zf = r.get("zero_fraction")
        cells.append(head + [num(r.get("min")), num(r.get("max")), num(r.get("mean")),
                             num(r.get("std")), "" if zf is None else f"{100 * zf:.1f}",
                             str(r.get("nan", "")), str(r.get("inf", ""))])
    page.add(f"<h2>{'Variables' if by == 'variable' else by.title() + 's'}</h2>" +
             _table(headers, cells, set(range(len(headers) - 7, len(headers)))))
    drawn = order([r for r in doc["variables"] if r.get("std") is not None], "parameters",
                  MAX_HISTOGRAMS, get=lambda r, k: r.get(k))
    hist = run_all(_histogram_job, [((store[r["name"]],),) for r in drawn],
                   [r["bytes"] * 2 for r in drawn])
    charts = []
    for r, h in zip(drawn, hist):
        if h is None:
            continue
        centers = [(x + y) / 2 for x, y in zip(h["edges"], h["edges"][1:])]
        fig = go.Figure(go.Bar(x=centers, y=h["counts"][0], marker_color="#2563eb"))
        fig.update_layout(bargap=0, title=f"{_short(r['name'])} {shape_text(r['shape'])}")
        charts.append(page.figure(fig, 240))
    if charts:
        page.add(f"<h2>Histograms</h2><p class=\"note\">The {len(charts)} largest variables, "
                 f"{BINS} bins over their finite values.</p><div class=\"grid\">" +
                 "".join(charts) + "</div>")
    return page.render()


# --- trend -------------------------------------------------------------------------------------

def trend_report(result: Any, target: Target) -> str:
    page = _Page("weightkit trend")
    go = page.go
    first, last = result.checkpoints[0], result.checkpoints[-1]
    page.add(f"<h1>weightkit trend</h1><p class=\"meta\">{_esc(first['path'])} … "
             f"{_esc(last['path'])}</p><p class=\"summary\">{_esc(trend_summary_line(result))}"
             f"</p>{_gates(target)}")
    steps = result.steps
    from .trend import rollup_trend
    layers = rollup_trend(result.series, "layer")
    for key, title, log in (("rel_l2_prev", "‖x_t − x_{t−1}‖ / ‖x_{t−1}‖ per layer", True),
                            ("rel_l2_first", "‖x_t − x_first‖ / ‖x_first‖ per layer", True),
                            ("l2_norm", "‖x_t‖ per layer", False)):
        fig = go.Figure([go.Scatter(x=steps, y=[_finite(v) for v in getattr(g, key)],
                                    mode="lines+markers", name=_short(g.name, 40))
                         for g in layers])
        fig.update_layout(title=title, xaxis_title="step",
                          yaxis=_log_axis(log and _any_positive(layers, key)))
        page.add(f"<h2>{html.escape(title)}</h2>" + page.figure(fig, 380))
    if len(steps) >= 2:
        changed = [g for g in layers if _finite(g.rel_l2_first[-1]) is not None]
        fig = go.Figure(go.Bar(x=[g.name for g in changed],
                               y=[g.rel_l2_first[-1] for g in changed], marker_color="#d97706"))
        fig.update_layout(title=f"change per layer, step {steps[0]} → {steps[-1]}",
                          xaxis_tickangle=-45,
                          yaxis=_log_axis(any(g.rel_l2_first[-1] for g in changed)))
        page.add("<h2>Change per layer over the run</h2>" + page.figure(fig, 340))
    rows = trend_rows(result, target.view)  # type: ignore[arg-type]
    by = target.view.by  # type: ignore[union-attr]
    headers = [by, "shape" if by == "variable" else "variables", "Δ prev last", "Δ prev max",
               "Δ first last", "norm first", "norm last", "Δ prev by step", "flags"]
    cells = []
    for r in rows:
        norms = [v for v in r.l2_norm if v is not None]
        prev = [v for v in r.rel_l2_prev if v is not None]
        cells.append([_esc(r.name), _esc(shape_text(r.shape)) if by == "variable"
                      else str(r.variables), num(r.rel_l2_prev[-1]),
                      num(max(prev, key=abs) if prev else None), num(r.rel_l2_first[-1]),
                      num(norms[0] if norms else None), num(r.l2_norm[-1]),
                      html.escape(sparkline(r.rel_l2_prev[1:])),
                      f'<span class="flag">{html.escape(trend_flags(r))}</span>'])
    page.add(f"<h2>{'Variables' if by == 'variable' else by.title() + 's'}</h2>" +
             _table(headers, cells, set(range(2, 7))))
    return page.render()


def _log_axis(log: bool) -> dict:
    """A log axis labelled once per decade (or a linear one)."""
    return dict(type="log", dtick=1, exponentformat="power") if log else dict(type="linear")


def _any_positive(groups: Sequence[Any], key: str) -> bool:
    return any(v for g in groups for v in getattr(g, key) if v is not None and math.isfinite(v))
