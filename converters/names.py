"""Names of variables: the one natural sort order weightkit lists names in.

Used wherever a file does not say the model's order (a TF1 checkpoint, a bare `.weights.h5`):
numbers by value, so `dense_2` comes before `dense_10` and `vars/2` before `vars/10`.
"""
from __future__ import annotations

import re

_DIGITS = re.compile(r"(\d+)")


def number_key(digits: str) -> tuple[int, str]:
    """Sort key of a run of digits by value, without int() (which refuses 4301 digits)."""
    value = digits.lstrip("0")
    return len(value), value


def natural_key(name: str) -> tuple:
    """Sort key of a `/`-separated name: part by part, runs of digits by value, then the
    name's bytes (so that distinct names never tie)."""
    parts = tuple(tuple(number_key(run) if i % 2 else run
                        for i, run in enumerate(_DIGITS.split(part)))
                  for part in name.split("/"))
    return parts, name.encode("utf-8", "surrogateescape")
