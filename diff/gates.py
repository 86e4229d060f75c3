"""CI gates: `--fail-if 'FIELD OP NUMBER'` on the rows of a report.

A gate names a per-variable number of the command's JSON document (`rel_l2`, `max_abs_diff`,
`nan`, ...), a comparison (`>`, `>=`, `<`, `<=`, `==`, `!=`) and a number (`inf` and `nan`
allowed). A row trips the gate when its value satisfies the comparison; a row without the number
(null: not compared, not applicable) never trips one, nor does NaN (every comparison with NaN is
false, as in IEEE 754, except `!=`). A series (`trend`: one value per checkpoint) trips when any
of its values does.
"""
from __future__ import annotations

import difflib
import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..converters.errors import UsageError

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, "==": operator.eq, "!=": operator.ne,
    ">": operator.gt, "<": operator.lt,
}
_GATE = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(>=|<=|==|!=|>|<)\s*(\S+)\s*")


@dataclass(frozen=True)
class Gate:
    field: str
    op: str
    value: float

    def __str__(self) -> str:
        return f"{self.field}{self.op}{self.value:g}"

    def trips(self, value: Any) -> bool:
        """Whether `value` (a number, None, or a list of them) satisfies the comparison."""
        if isinstance(value, (list, tuple)):
            return any(self.trips(v) for v in value)
        if value is None or isinstance(value, (str, bool)):
            return False
        return OPERATORS[self.op](float(value), self.value)


@dataclass
class Tripped:
    """A gate and the rows that tripped it: (name, the value that tripped) in report order."""
    gate: Gate
    rows: list[tuple[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"gate": str(self.gate), "field": self.gate.field, "op": self.gate.op,
                "value": self.gate.value,
                "tripped": [{"name": name, "value": value} for name, value in self.rows]}


def parse(text: str, fields: Sequence[str]) -> Gate:
    """A gate from `FIELD OP NUMBER`; `fields` are the numbers the command's rows have.

    Raises UsageError naming the closest field when FIELD is not one of them."""
    match = _GATE.fullmatch(text)
    if not match:
        raise UsageError(f"--fail-if: expected 'FIELD OP NUMBER' with OP one of "
                         f"{' '.join(OPERATORS)} (e.g. {example(fields)}), received {text!r}")
    name, op, number = match.groups()
    if name not in fields:
        close = difflib.get_close_matches(name, fields, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise UsageError(f"--fail-if: no per-variable number {name!r}; {hint}"
                         f"expected one of {', '.join(fields)}")
    try:
        value = float(number)
    except ValueError:
        raise UsageError(f"--fail-if: expected a number after {op}, received {number!r}") from None
    return Gate(name, op, value)


def example(fields: Sequence[str]) -> str:
    """A gate the command with these fields takes: 'rel_l2>0.05' for wdiff, 'nan>0' for show,
    'rel_l2_prev>0.05' for trend."""
    for name, text in (("rel_l2", "'rel_l2>0.05'"), ("rel_l2_prev", "'rel_l2_prev>0.05'"),
                       ("nan", "'nan>0'")):
        if name in fields:
            return text
    return f"'{fields[0]}>0'" if fields else "'FIELD>0'"


def parse_all(texts: Iterable[str] | None, fields: Sequence[str]) -> list[Gate]:
    return [parse(text, fields) for text in texts or ()]


def evaluate(gates: Sequence[Gate], rows: Iterable[tuple[str, Mapping[str, Any]]]
             ) -> list[Tripped]:
    """For each gate, the rows `(name, values)` that trip it (gates no row trips included, with
    no rows), in the order given."""
    results = [Tripped(g) for g in gates]
    for name, values in rows:
        for result in results:
            value = values.get(result.gate.field)
            if result.gate.trips(value):
                result.rows.append((name, _tripping(result.gate, value)))
    return results


def _tripping(gate: Gate, value: Any) -> Any:
    """The value to report: for a series, the largest magnitude among those that trip."""
    if isinstance(value, (list, tuple)):
        hits = [v for v in value if gate.trips(v)]
        return max(hits, key=lambda v: -math.inf if math.isnan(float(v)) else abs(float(v)))
    return value


def failed(results: Sequence[Tripped]) -> bool:
    return any(r.rows for r in results)
