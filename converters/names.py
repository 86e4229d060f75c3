"""Names: the one natural sort key, and the one way a name or glob the user types selects
variables of a store.

Every selection in weightkit (`show --filter`, `wdiff --include/--exclude`, the operations of
`edit`, `store[name]`, `--set NAME=...`) goes through this module, so that they all accept the
same spellings and all fail the same way:

- a glob (`fnmatch`, case-sensitive; `*` also crosses `/`) matches a variable when it matches
  its canonical name, its original key (`tensor.meta["key"]`, what the file calls it) or an
  alias the reader recorded;
- an exact name is a canonical name, an original key, or an alias the reader recorded (the
  positional names older weightkit gave Keras 3 variables, `conv1/0`);
- a pattern that matches nothing, or a selection that leaves nothing, is a `UsageError` (exit 2)
  naming the closest real names (`closest`), never an empty result.
"""
from __future__ import annotations

import bisect
import difflib
import fnmatch
import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .errors import UsageError

_RUNS = re.compile(r"(\d+)")
# Roles (`Tensor.meta["role"]`): model weights, optimizer slots, step counters, metric state.
OPTIMIZER_ROLES = frozenset({"optimizer", "counter"})


# -- natural order -------------------------------------------------------------------------------

def number_key(digits: str) -> tuple[int, str]:
    """Sort key of a run of digits by value, without int() (which refuses 4301 digits)."""
    value = digits.lstrip("0")
    return len(value), value


def natural_key(name: str) -> tuple:
    """Sort key putting `dense_2` before `dense_10` and `vars/2` before `vars/10`: path
    components compared in turn, each as runs of text and of digits (digits by value), then the
    name's bytes to break ties (`x_02` and `x_2`)."""
    return tuple(map(_component_key, name.split("/"))), name.encode("utf-8", "surrogateescape")


@functools.lru_cache(maxsize=1 << 16)
def _component_key(part: str) -> tuple:
    """One path component as runs of text and of digits (remembered: a checkpoint's 100,000
    keys share most of their components, and sorting them spent 0.3 s here)."""
    return tuple(number_key(run) if i % 2 else run for i, run in enumerate(_RUNS.split(part)))


# -- matching ------------------------------------------------------------------------------------

def _key(tensor: Any) -> str | None:
    key = getattr(tensor, "meta", {}).get("key")
    return key if isinstance(key, str) else None


def glob_matches(pattern: str, name: str, tensor: Any = None,
                 aliases: Sequence[str] = ()) -> bool:
    """Whether glob `pattern` matches the canonical `name`, the tensor's original key or one
    of its `aliases`."""
    if fnmatch.fnmatchcase(name, pattern):
        return True
    key = _key(tensor)
    if key is not None and key != name and fnmatch.fnmatchcase(key, pattern):
        return True
    return any(fnmatch.fnmatchcase(alias, pattern) for alias in aliases)


def aliases_of(store: Mapping[str, Any]) -> dict[str, list[str]]:
    """{canonical name: its aliases} of a store (`Store.aliases`)."""
    out: dict[str, list[str]] = {}
    for alias, name in (getattr(store, "aliases", None) or {}).items():
        out.setdefault(name, []).append(alias)
    return out


_WORD = re.compile(r"[^\W\d_]+")  # a run of letters: `layer` in `layer_5/kernel`
_BRACKETS = re.compile(r"\[[^\]]*\]")  # a glob's character class
_NUMBER = re.compile(r"\d+")
# difflib compares a word with at most this many names (about 0.05 s); in a larger store, with
# those next to it in sorted order (a typo in the letters is put right before, by `_respelt`).
NEAR_CANDIDATES = 2000


def closest(word: str, names: Iterable[str], n: int = 3) -> list[str]:
    """Up to `n` names closest to `word`: `word` with its misspelt words put right, keeping its
    numbers and wildcards (`layr_5*` -> `layer_5*`), when that names or matches a variable;
    else the nearest names by difflib, also offering groups (`head/*`) for a glob. Never more
    than a few, and quick at 100,000 names."""
    names = list(dict.fromkeys(names))
    glob = any(c in word for c in "*?[")
    respelt = _respelt(word, names)
    if respelt is not None and (any(map(re.compile(fnmatch.translate(respelt)).match, names))
                                if glob else respelt in names):
        return [respelt]
    candidates = names
    if glob:
        groups: dict[str, None] = {}
        for name in names:
            parts = name.split("/")
            for depth in range(1, len(parts)):
                groups.setdefault("/".join(parts[:depth]) + "/*", None)
        candidates = names + list(groups)
    if len(candidates) > NEAR_CANDIDATES:
        known = set(candidates)
        near = _next_to([word] if respelt is None else [word, respelt], candidates)
        candidates = list(dict.fromkeys(near + [c for c in _same_form(word, known) if c in known]))
    found = difflib.get_close_matches(word, candidates, n=n, cutoff=0.6)
    return found or difflib.get_close_matches(word, candidates, n=n, cutoff=0.3)


def _respelt(word: str, names: Sequence[str]) -> str | None:
    """`word` with each run of letters the names never use (outside a `[...]` class) replaced
    by the closest one they do (`layr` -> `layer`); None if nothing was replaced."""
    vocabulary = set(_WORD.findall("\n".join(names)))
    classes = [m.span() for m in _BRACKETS.finditer(word)]
    pieces, last = [], 0
    for m in _WORD.finditer(word):
        run = m.group()
        if run in vocabulary or any(a <= m.start() < b for a, b in classes):
            continue
        near = [v for v in vocabulary if abs(len(v) - len(run)) <= 2]
        if len(near) > NEAR_CANDIDATES:
            near = _next_to([run], near)
        best = difflib.get_close_matches(run, near, n=1, cutoff=0.6)
        if best:
            pieces += [word[last:m.start()], best[0]]
            last = m.end()
    return "".join(pieces) + word[last:] if pieces else None


def _same_form(word: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """`word`'s numbers put into the `n` forms of candidates closest to its own, a form being a
    name with its numbers left out (`layr_5*` is like `block_#/*`: `block_5/*`)."""
    numbers, form = _NUMBER.findall(word), _NUMBER.sub("#", word)
    forms = {f for f in _NUMBER.sub("#", "\n".join(candidates)).split("\n")
             if f.count("#") == len(numbers)}
    if len(forms) > NEAR_CANDIDATES:
        forms = set(_next_to([form], list(forms)))
    near = difflib.get_close_matches(form, forms, n=n, cutoff=0.3)
    return [re.sub("#", lambda _, it=iter(numbers): next(it), form) for form in near]


def _next_to(words: Sequence[str], candidates: Sequence[str]) -> list[str]:
    """At most NEAR_CANDIDATES of `candidates`, those next to each of `words` in sorted order
    (sharing the longest prefixes with it)."""
    ordered = sorted(candidates)
    half = NEAR_CANDIDATES // (2 * len(words))
    out: dict[str, None] = {}
    for word in words:
        i = bisect.bisect_left(ordered, word)
        out.update(dict.fromkeys(ordered[max(0, i - half):i + half]))
    return list(out)


def suggestion(word: str, names: Iterable[str]) -> str:
    """`did you mean 'a', 'b'?` or `e.g. 'x', 'y', ...` when nothing is close."""
    names = list(names)
    near = closest(word, names)
    if near:
        return "did you mean " + ", ".join(repr(x) for x in near) + "?"
    if not names:
        return "there are no variables"
    return "e.g. " + ", ".join(repr(x) for x in names[:3]) + (", ..." if len(names) > 3 else "")


def nothing_matched(what: str, pattern: str, names: Sequence[str]) -> UsageError:
    """The error for a pattern that matched no variable of `names` (for a plain name: no
    variable of that name)."""
    if not any(c in pattern for c in "*?["):
        return UsageError(f"{what}: no variable named {pattern!r} among {len(names):,}; "
                          f"{suggestion(pattern, names)}")
    return UsageError(f"{what} {pattern!r} matched none of {len(names):,} variable(s); "
                      f"{suggestion(pattern, names)}")


def match(store: Mapping[str, Any], pattern: str, what: str = "pattern") -> list[str]:
    """The names of `store` whose name or original key `pattern` (a glob) matches, in store
    order; a UsageError naming the closest names when it matches none."""
    aliases = aliases_of(store)
    found = [name for name, tensor in store.items()
             if glob_matches(pattern, name, tensor, aliases.get(name, ()))]
    if not found:
        raise nothing_matched(what, pattern, list(store))
    return found


def role_allows(role: str, roles: str) -> bool:
    """`roles`: "all", "no-optimizer" (leaves out optimizer slots and counters) or "weights"
    (model weights only: no optimizer state and no metric state)."""
    if roles == "weights":
        return role == "weight"
    if roles == "no-optimizer":
        return role not in OPTIMIZER_ROLES
    return True


def roles_option(no_optimizer: bool = False, weights_only: bool = False) -> str:
    """The `roles` of `select` for the `--no-optimizer` and `--weights-only` flags."""
    return "weights" if weights_only else "no-optimizer" if no_optimizer else "all"


def select(stores: Sequence[Mapping[str, Any]] | Mapping[str, Any],
           include: Sequence[str] = (), exclude: Sequence[str] = (), roles: str = "all", *,
           include_option: str = "--include", exclude_option: str = "--exclude"
           ) -> list[str] | list[list[str]]:
    """The names each store keeps: those matching any of `include` (all when empty), matching
    none of `exclude`, of a role `roles` allows (`role_allows`); in store order.

    Several stores (the two sides of a diff) are selected together: a pattern must match a
    variable in at least one of them. A pattern matching nothing, or a selection that leaves
    no variable in any store, is a UsageError naming the closest real names. Returns one list
    for one store, a list of lists for a sequence of stores."""
    single = isinstance(stores, Mapping)
    group: list[Mapping[str, Any]] = [stores] if single else list(stores)
    if not include and not exclude and roles == "all":  # everything (the common call, fast)
        return list(stores) if single else [list(s) for s in group]  # type: ignore[arg-type]
    every = list(dict.fromkeys(n for s in group for n in s))
    known = [aliases_of(s) for s in group]
    for option, patterns in ((include_option, include), (exclude_option, exclude)):
        for pattern in patterns:
            if not any(glob_matches(pattern, n, t, a.get(n, ()))
                       for s, a in zip(group, known) for n, t in s.items()):
                raise nothing_matched(option, pattern, every)
    chosen = [[name for name, tensor in s.items()
               if (not include or any(glob_matches(p, name, tensor, a.get(name, ()))
                                      for p in include))
               and not any(glob_matches(p, name, tensor, a.get(name, ())) for p in exclude)
               and role_allows(getattr(tensor, "role", "weight"), roles)]
              for s, a in zip(group, known)]
    if every and not any(chosen):
        raise nothing_left(include, exclude, roles, len(every), include_option, exclude_option,
                           group)
    return chosen[0] if single else chosen


def nothing_left(include: Sequence[str], exclude: Sequence[str], roles: str, count: int,
                 include_option: str = "--include", exclude_option: str = "--exclude",
                 stores: Sequence[Mapping[str, Any]] = ()) -> UsageError:
    """The error for a selection that leaves none of `count` variables; with the `stores`,
    it says when an --exclude pattern took a variable by its original key rather than its
    name (a Keras 3 checkpoint keys its model weights `optimizer/_trainable_variables/N`)."""
    asked = [f"{include_option} {p!r}" for p in include]
    asked += [f"{exclude_option} {p!r}" for p in exclude]
    if roles != "all":
        asked.append("--weights-only" if roles == "weights" else "--no-optimizer")
    by_key = [(p, name, _key(t)) for s in stores for name, t in s.items() for p in exclude
              if not fnmatch.fnmatchcase(name, p) and _key(t) is not None
              and fnmatch.fnmatchcase(_key(t), p)]
    note = "" if not by_key else (
        f"; {exclude_option} {by_key[0][0]!r} matches {by_key[0][1]!r} by its key "
        f"{by_key[0][2]!r}" + (f" (and {len(by_key) - 1:,} more)" if len(by_key) > 1 else ""))
    return UsageError(f"the selection ({', '.join(asked)}) leaves none of {count:,} "
                      f"variable(s){note}")


def lookup(store: Mapping[str, Any], name: str, what: str = "variable") -> str:
    """The canonical name `name` refers to in `store`: itself, an original key, or an alias the
    reader recorded (`Store.resolve`); a UsageError naming the closest names otherwise."""
    resolve = getattr(store, "resolve", None)
    found = resolve(name) if resolve is not None else (name if name in store else None)
    if found is None:
        raise UsageError(f"no {what} named {name!r}; {suggestion(name, list(store))}")
    return found


def unique_names(candidates: Mapping[str, Sequence[str]], what: str = "variable"
                 ) -> dict[str, str]:
    """{item: name} giving every item the first of its candidate names that is free.

    An item keeps its first candidate when no other item has the same first candidate, or
    when it is the only one of those whose sole candidate it is (a dataset named by its own
    path); the others take their next candidate that is nobody's first and not taken yet.
    Two items never get one name, and a fallback never takes another item's own name. A
    ValueError when an item has no free candidate (the caller says which file)."""
    sharers: dict[str, list[str]] = {}
    for item, options in candidates.items():
        if options:
            sharers.setdefault(options[0], []).append(item)
    owner: dict[str, str] = {}
    for first, items in sharers.items():
        if len(items) == 1:
            owner[first] = items[0]
            continue
        sole = [i for i in items if len(candidates[i]) == 1]
        if len(sole) == 1:
            owner[first] = sole[0]
    out = {owner[c[0]]: c[0] for c in candidates.values() if c and owner.get(c[0]) is not None}
    taken = set(owner)
    for item, options in candidates.items():
        if item in out:
            continue
        for option in options[1:]:
            if option not in taken and option not in sharers:
                out[item] = option
                taken.add(option)
                break
        else:
            raise ValueError(f"cannot give {what} {item!r} a unique name "
                             f"(candidates {list(options)!r} are taken)")
    return {item: out[item] for item in candidates}
