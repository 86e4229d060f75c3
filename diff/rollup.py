"""Rollups and ordering of a report's rows: `--by layer|module`, `--sort FIELD`, `--top N`.

A *layer* is a variable's name without its last `/` part (`dense/kernel` -> `dense`; a name
without `/` is its own layer); a *module* is the first `/` part (`encoder/layer_0/dense/kernel`
-> `encoder`). Groups keep the order in which their first variable appears.

Statistics of a group are combined from the exact sums behind each variable's statistics, never
averaged: counts add (mismatched elements, NaN, Inf, zeros), extremes take the extreme, relative
L2 is √Σ‖a−b‖² / √Σ‖a‖², cosine Σab / √(Σa²·Σb²), means and standard deviations merge count,
mean and Σ(x−mean)² (Chan et al.). A group of a diff needs Σa² of its identical variables too:
compare with `Options(norms=True)`.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from .engine import STATUSES, Entry
from .summary import Moments, TensorStats

BY = ("variable", "layer", "module")
T = TypeVar("T")


def group_name(name: str, by: str) -> str:
    """The layer or module `name` belongs to (`name` itself for `variable`)."""
    if by == "layer":
        return name.rpartition("/")[0] or name
    if by == "module":
        return name.partition("/")[0] or name
    return name


def groups(names: Iterable[str], by: str) -> dict[str, list[int]]:
    """Group name -> indices of its members, in order of first appearance."""
    out: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        out.setdefault(group_name(name, by), []).append(i)
    return out


# --- diff ------------------------------------------------------------------------------------

@dataclass
class DiffGroup:
    """The variables of one layer or module of a diff, their statistics combined."""
    name: str
    variables: int
    counts: dict[str, int]
    size: int
    members: list[str] = field(repr=False)
    mismatched: int | None = None
    mismatch_fraction: float | None = None
    max_abs_diff: float | int | None = None
    max_rel_diff: float | None = None
    mean_abs_diff: float | None = None
    rms_diff: float | None = None
    rel_l2: float | None = None
    cosine: float | None = None
    nan_a: int | None = None
    nan_b: int | None = None
    inf_a: int | None = None
    inf_b: int | None = None

    @property
    def status(self) -> str:
        """`same` when every member is same, else the most common status among the others."""
        changed = {s: n for s, n in self.counts.items() if n and s not in ("same", "folded")}
        return max(changed, key=changed.__getitem__) if changed else "same"

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def rollup_diff(entries: Sequence[Entry], by: str) -> list[DiffGroup]:
    """The entries of a diff grouped by layer or module, statistics combined from sums."""
    out = []
    for name, members in groups((e.name for e in entries), by).items():
        out.append(_diff_group(name, [entries[i] for i in members]))
    return out


def _diff_group(name: str, members: list[Entry]) -> DiffGroup:
    counts = {s: 0 for s in STATUSES}
    for e in members:
        counts[e.status] = counts.get(e.status, 0) + 1  # "folded": export diffs only
    group = DiffGroup(name, len(members), counts, sum(e.size for e in members),
                      [e.name for e in members])
    compared = [e for e in members if e.mismatched is not None]
    if not compared:
        return group
    group.mismatched = sum(e.mismatched for e in compared)  # type: ignore[misc]
    sized = sum(e.size for e in compared)
    group.mismatch_fraction = group.mismatched / sized if sized else None
    for key in ("nan_a", "nan_b", "inf_a", "inf_b"):
        setattr(group, key, sum(getattr(e, key) or 0 for e in compared))
    group.max_abs_diff = _extreme(e.max_abs_diff for e in compared)
    group.max_rel_diff = _extreme(e.max_rel_diff for e in compared)
    if any(e.sums is None for e in compared):  # a checksum diff: no value statistics
        return group
    finite = sum(e.sums.finite for e in compared)  # type: ignore[union-attr]
    if not finite:
        return group
    sum_abs, sum_sq, aa, bb, ab = (math.fsum(getattr(e.sums, k) for e in compared)
                                   for k in ("sum_abs", "sum_sq", "aa", "bb", "ab"))
    group.mean_abs_diff = sum_abs / finite
    group.rms_diff = math.sqrt(sum_sq / finite)
    group.rel_l2 = relative(sum_sq, aa)
    norm_a, norm_b = math.sqrt(aa), math.sqrt(bb)
    group.cosine = ab / (norm_a * norm_b) if norm_a and norm_b else None
    return group


def relative(sum_sq: float, ref_sq: float) -> float:
    """√sum_sq / √ref_sq as the engine reports relative L2: inf when only the reference is 0,
    0 when both are."""
    norm_d, norm_ref = math.sqrt(sum_sq), math.sqrt(ref_sq)
    return norm_d / norm_ref if norm_ref else (0.0 if norm_d == 0 else math.inf)


def _extreme(values: Iterable[float | int | None]) -> float | int | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


# --- show ------------------------------------------------------------------------------------

@dataclass
class StatsGroup:
    """The variables of one layer or module of `show`, their statistics combined."""
    name: str
    variables: int
    parameters: int
    bytes: int
    members: list[str] = field(repr=False)
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    std: float | None = None
    zeros: int = 0
    zero_fraction: float | None = None
    nan: int = 0
    inf: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def rollup_stats(names: Sequence[str], sizes: Sequence[int], nbytes: Sequence[int],
                 stats: Sequence[TensorStats | None], by: str) -> list[StatsGroup]:
    """`show`'s rows grouped by layer or module; moments merged, counts added."""
    out = []
    for name, members in groups(names, by).items():
        group = StatsGroup(name, len(members), sum(sizes[i] for i in members),
                           sum(nbytes[i] for i in members), [names[i] for i in members])
        present = [stats[i] for i in members if stats[i] is not None]
        if present:
            moments = Moments()
            for s in present:
                if s.finite:
                    moments.merge(s.finite, s.mean, s.m2, s.min, s.max,  # type: ignore[arg-type]
                                  s.std)
            group.zeros = sum(s.zeros for s in present)
            group.nan = sum(s.nan for s in present)
            group.inf = sum(s.inf for s in present)
            group.zero_fraction = group.zeros / group.parameters if group.parameters else None
            if moments.count:
                group.min, group.max, group.mean = moments.lo, moments.hi, moments.mean
                group.std = moments.std
        out.append(group)
    return out


# --- ordering --------------------------------------------------------------------------------

def order(rows: Sequence[T], sort: str | None, top: int | None,
          get: Callable[[T, str], Any] = getattr) -> list[T]:
    """`rows` sorted by `sort` (numbers by magnitude, largest first, missing and NaN last;
    `name` alphabetically), then the first `top` of them. Stable: ties keep report order."""
    rows = list(rows)
    if sort == "name":
        rows.sort(key=lambda r: str(get(r, "name")))
    elif sort:
        rows.sort(key=lambda r: _magnitude(get(r, sort)), reverse=True)
    return rows if top is None else rows[:top]


def _magnitude(value: Any) -> float:
    if isinstance(value, (list, tuple)):  # a series: its largest magnitude
        return max((_magnitude(v) for v in value), default=-math.inf)
    if value is None or isinstance(value, (str, bool)):
        return -math.inf
    value = abs(float(value))
    return -math.inf if math.isnan(value) else value


def show_rows(doc: dict[str, Any], names: Sequence[str], stats: Sequence[TensorStats | None],
              by: str, sort: str | None, top: int | None) -> tuple[list[dict], list[dict]]:
    """A `show` document's view: rolls its variables up `by` layer or module (adding
    `groups`), records the view, and lists the rows sorted by `sort` and cut to `top`. Returns
    (every row, what gates test; the rows listed). `names`, `stats`: per variable row."""
    rows: list[dict] = doc["variables"]
    if by != "variable":
        sizes, nbytes = [r["parameters"] for r in rows], [r["bytes"] for r in rows]
        doc["groups"] = [g.as_dict() for g in rollup_stats(names, sizes, nbytes, stats, by)]
        rows = doc["groups"]
    shown = order(rows, sort, top, get=lambda r, k: r.get(k))
    doc["view"] = {"by": by, "sort": sort, "top": top}
    if sort or top:
        doc["groups" if by != "variable" else "variables"] = shown
    return rows, shown
