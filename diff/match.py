"""Pairing the variables of two stores, across formats and naming schemes.

Stages, each working only on what the previous ones left unmatched:
1. `name`: identical canonical names;
2. `normalized`: names equal after `normalize()` (`:0`, checkpoint attribute suffixes, Keras 3
   `vars/` groups, model-scope prefixes, case), when the normalized name is unique on both sides;
   a first path component shared by all weights of one side (a model name) may be dropped too,
   whichever way pairs the most;
3. `values`: a leftover in A and a leftover in B with the same shape, dtype and content hash
   (a rename; the engine verifies the values before calling it one);
4. `structure`: with `auto`, first the leftovers of a layer another name of which was found by
   values (`block_3/dense/bias` with `stage_9/dense/bias` once the kernels paired); Keras 3
   positional names against named ones of the same layer (`bn/0` ↔ `bn/gamma`, by the
   creation order of `WEIGHT_ORDER`); then leftovers aligned by order and (shape, dtype),
   longest common subsequence first.

`--match name` runs 1–3, `--match structure` runs 4 on everything (names ignored) then 3,
`--match auto` runs 1–4, then judges the result: when the names left mostly shape changes and
added/removed variables that order and shape pair instead (a model whose auto-numbered layers
are `dense_4` where they were `dense_3`), it pairs by structure and says so in `note`; when
structure would pair only some of them, the note says that and the names stand.
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher

_SUFFIXES = re.compile(r"(/\.ATTRIBUTES/VARIABLE_VALUE|:\d+)$")
# The order in which Keras layers create their variables (what `vars/N` counts).
WEIGHT_ORDER = ("kernel", "depthwise_kernel", "pointwise_kernel", "recurrent_kernel", "bias",
                "embeddings", "gamma", "beta", "moving_mean", "moving_variance")
_RANK = {name: i for i, name in enumerate(WEIGHT_ORDER)}
_SCOPE = re.compile(r"^(model|sequential|functional|model_weights|layers|_functional)(_\d+)?$")


@dataclass(frozen=True)
class Var:
    """What matching may look at: the name, its role and its signature."""
    name: str
    role: str
    shape: tuple[int, ...]
    dtype: str

    @property
    def signature(self) -> tuple:
        return (self.shape, self.dtype)


@dataclass(frozen=True)
class Pair:
    a: str
    b: str
    matched_by: str  # name | normalized | values | structure


@dataclass
class Matching:
    pairs: list[Pair]
    only_a: list[str]
    only_b: list[str]
    note: str | None = None


def normalize(name: str) -> str:
    """A name with format decorations removed, for matching across formats.

    `model/dense/kernel:0` → `dense/kernel`; `sequential/dense/vars/0` → `dense/0`;
    `dense/kernel/.ATTRIBUTES/VARIABLE_VALUE` → `dense/kernel`.
    """
    name = _SUFFIXES.sub("", name)
    parts = [p for i, p in enumerate(name.split("/"))
             if not (p == "vars" and i + 1 < len(name.split("/")))]
    while len(parts) > 1 and _SCOPE.match(parts[0]):
        parts.pop(0)
    return "/".join(parts).lower()


def _common_scope(names: Sequence[str]) -> str | None:
    """The first path component shared by every name (with at least two names), if any, when
    it is above the layers (`model/dense/kernel`): a component right above each variable
    (`d1/kernel`) is a layer, and a layer renamed is not a model scope."""
    firsts = {n.split("/", 1)[0] for n in names if "/" in n}
    if len(names) > 1 and len(firsts) == 1 and all(n.count("/") >= 2 for n in names):
        return firsts.pop() + "/"
    return None


def _scope_variants(vars_: Sequence[Var], side: Sequence[Var]) -> list[dict[str, str]]:
    """name → normalized key of `vars_`, as is and (if all weights of their whole `side` share
    one) without the model scope. The scope is the whole side's: the few variables a name
    stage left (the layer an edit renamed) share a first component, but it is no model's."""
    keys = {v.name: normalize(v.name) for v in vars_}
    scope = _common_scope([normalize(v.name) for v in side if v.role == "weight"])
    if not scope:
        return [keys]
    return [keys, {n: k[len(scope):] if k.startswith(scope) else k for n, k in keys.items()}]


def _pair_by_key(left_a: list[Var], left_b: list[Var], key_a: Callable[[Var], Hashable | None],
                 key_b: Callable[[Var], Hashable | None], how: str) -> list[Pair]:
    """Pairs whose keys are equal and unique on both sides (a None key never matches)."""
    ka = {v.name: key_a(v) for v in left_a}
    kb = {v.name: key_b(v) for v in left_b}
    count_a, count_b = Counter(ka.values()), Counter(kb.values())
    by_key = {k: name for name, k in kb.items() if k is not None and count_b[k] == 1}
    return [Pair(v.name, by_key[ka[v.name]], how) for v in left_a
            if ka[v.name] is not None and count_a[ka[v.name]] == 1 and ka[v.name] in by_key]


def _parent(name: str) -> tuple[str, str]:
    parent, _, last = normalize(name).rpartition("/")
    return parent, last


def _siblings(pairs: list[Pair], left_a: list[Var], left_b: list[Var]) -> list[Pair]:
    """Leftovers of a layer whose other variables were paired with one layer of the other side
    under another name (a renamed layer, found by values): paired with that layer's variable
    of the same last name, shape and dtype (`block_3/dense/bias` with `stage_9/dense/bias`
    once the kernels paired; equal zero biases are no evidence by values, and aligning them
    by order would cross layers). Called `structure`, as they are paired by their place."""
    targets: dict[str, set[str]] = {}
    for p in pairs:
        layer_a, layer_b = _parent(p.a)[0], _parent(p.b)[0]
        if layer_a != layer_b:
            targets.setdefault(layer_a, set()).add(layer_b)
    if not targets:
        return []
    by_place = {_parent(v.name): v for v in left_b}
    out, used = [], set()
    for v in left_a:
        layer, last = _parent(v.name)
        found = targets.get(layer, set())
        if len(found) != 1:  # (a layer split over several: no evidence which)
            continue
        w = by_place.get((next(iter(found)), last))
        if w is not None and w.name not in used and w.signature == v.signature:
            out.append(Pair(v.name, w.name, "structure"))
            used.add(w.name)
    return out


def _positional(positional: list[Var], named: list[Var], swap: bool = False) -> list[Pair]:
    """Keras 3 positional names (`bn/0`, `bn/1`, ...) against named ones (`bn/gamma`, ...) of
    the same layer: the named ones put in Keras' creation order (`WEIGHT_ORDER`), then paired
    in order when every shape and dtype agrees."""
    groups: dict[str, list[Var]] = {}
    for v in positional:
        parent, last = _parent(v.name)
        if last.isdigit():
            groups.setdefault(parent, []).append(v)
    by_parent: dict[str, list[Var]] = {}
    for v in named:
        parent, last = _parent(v.name)
        if not last.isdigit():
            by_parent.setdefault(parent, []).append(v)
    pairs = []
    for parent, group in groups.items():
        others = by_parent.get(parent, [])
        if len(others) != len(group) or any(_parent(v.name)[1] not in _RANK for v in others):
            continue
        group = sorted(group, key=lambda v: int(_parent(v.name)[1]))
        others = sorted(others, key=lambda v: _RANK[_parent(v.name)[1]])
        if [v.signature for v in group] == [v.signature for v in others]:
            pairs += [Pair(o.name, g.name, "structure") if swap else Pair(g.name, o.name, "structure")
                      for g, o in zip(group, others)]
    return pairs


def _align(left_a: list[Var], left_b: list[Var]) -> list[Pair]:
    """Pairs from a longest-common-subsequence alignment of (shape, dtype) in order, per role."""
    pairs = []
    for role in dict.fromkeys(v.role for v in left_a + left_b):
        sa = [v for v in left_a if v.role == role]
        sb = [v for v in left_b if v.role == role]
        matcher = SequenceMatcher(None, [v.signature for v in sa], [v.signature for v in sb],
                                  autojunk=False)
        for block in matcher.get_matching_blocks():
            pairs += [Pair(sa[block.a + k].name, sb[block.b + k].name, "structure")
                      for k in range(block.size)]
    return pairs


def _fits(pairs: list[Pair], a: Sequence[Var], b: Sequence[Var]) -> int:
    """How many pairs hold variables of one shape and dtype."""
    sig_a = {v.name: v.signature for v in a}
    sig_b = {v.name: v.signature for v in b}
    return sum(1 for p in pairs if sig_a[p.a] == sig_b[p.b])


def _judged(named: Matching, structure: Matching, a: Sequence[Var], b: Sequence[Var]
            ) -> Matching:
    """The name-first matching, or the structure matching when the names leave mostly what
    structure explains (see the module docstring); with a note when it tells."""
    good = _fits(named.pairs, a, b)
    better = _fits(structure.pairs, a, b)
    if better <= good:
        return named
    misfits = len(named.pairs) - good
    by_name = sum(1 for p in named.pairs if p.matched_by in ("name", "normalized"))
    left = len(named.only_a) + len(named.only_b)
    told = (f"by name {misfits} pair(s) changed shape or dtype and {left} variable(s) were "
            f"added or removed; their order and shapes pair {better - good} more")
    if misfits + left > by_name - misfits:
        structure.note = told + " variable(s): paired by structure (--match name to keep " \
            "the names)"
        return structure
    named.note = told + " (--match structure to pair them so)"
    return named


def match(a: Sequence[Var], b: Sequence[Var], mode: str = "auto",
          fingerprint: Callable[[str, str], Hashable] | None = None) -> Matching:
    """Pair the variables of A and B. `fingerprint(side, name)` ("a" or "b") gives a content
    hash for rename detection; without it renames are not looked for."""
    left_a, left_b = list(a), list(b)
    pairs: list[Pair] = []

    def take(new: list[Pair]) -> None:
        nonlocal left_a, left_b
        pairs.extend(new)
        used_a, used_b = {p.a for p in new}, {p.b for p in new}
        left_a = [v for v in left_a if v.name not in used_a]
        left_b = [v for v in left_b if v.name not in used_b]

    def by_values() -> list[Pair]:
        if fingerprint is None:
            return []
        shared = {v.signature for v in left_a} & {v.signature for v in left_b}
        return _pair_by_key(
            left_a, left_b,
            lambda v: (v.signature, fingerprint("a", v.name)) if v.signature in shared else None,
            lambda v: (v.signature, fingerprint("b", v.name)) if v.signature in shared else None,
            "values")

    if mode == "structure":
        take(_align(left_a, left_b))
        take(by_values())
    elif mode == "auto":
        named = match(a, b, "name-then-structure", fingerprint)
        if _fits(named.pairs, a, b) >= min(len(a), len(b)):
            # structure cannot pair more, so `_judged` would keep the names (the usual case:
            # same names and shapes); not aligned, as SequenceMatcher is quadratic on few
            # distinct shapes: ~10 s for 10,000 variables, far longer for 100,000
            return named
        return _judged(named, match(a, b, "structure", fingerprint), a, b)
    else:
        take(_pair_by_key(left_a, left_b, lambda v: v.name, lambda v: v.name, "name"))
        candidates = [
            _pair_by_key(left_a, left_b, lambda v, ka=ka: ka[v.name], lambda v, kb=kb: kb[v.name],
                         "normalized")
            for ka in _scope_variants(left_a, a) for kb in _scope_variants(left_b, b)]
        take(max(candidates, key=len))
        take(by_values())
        if mode == "name-then-structure":
            take(_siblings(pairs, left_a, left_b))
            take(_positional(left_a, left_b) + _positional(left_b, left_a, swap=True))
            take(_align(left_a, left_b))
    order_a = {v.name: i for i, v in enumerate(a)}
    pairs.sort(key=lambda p: order_a[p.a])
    return Matching(pairs, [v.name for v in left_a], [v.name for v in left_b])
