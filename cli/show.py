"""`weightkit show FILE`: names, shapes, dtypes and statistics of every variable; or the values
of some (`--values`), printed or exported to `.npy`/`.npz`."""
from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..converters.atomic import atomic_output
from ..converters.names import match, roles_option, select as select_names
from ..converters.errors import UsageError
from ..converters.quant import dequantize
from ..converters.registry import load
from ..converters.store import Store, Tensor
from ..diffing.gates import evaluate, failed
from ..diffing.render import (cut_line, dump_json, fold, markdown_gates, md_code, num, print_gates,
                              shape_text)
from ..diffing.rollup import show_rows
from ..diffing.summary import SHOW_SCHEMA_VERSION, TensorStats, show_document, stats_of
from .main import Exit
from .progress import Progress
from .report import (add_report_arguments, add_selection_arguments, check_html, destination,
                     gates)
from .text import colour, human_bytes, md_escape, paint, safe, table

HELP = "show the variables of a weights file: shapes, dtypes, statistics, values"
# per-variable numbers of the JSON document: what --sort and --fail-if accept
NUMBERS = ("parameters", "bytes", "min", "max", "mean", "std", "zero_fraction", "nan", "inf")
_SPEC = re.compile(r"(.*)\[([^\[\]]*)\]")
_UNCLOSED = re.compile(r"(.*)\[([^\[\]]*)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="weights file, checkpoint prefix or directory")
    parser.add_argument("--from", dest="src_format", metavar="FORMAT",
                        help="read as this format (default: detected from the content)")
    add_selection_arguments(parser, filter_alias=True)
    parser.add_argument("--no-stats", action="store_true", help="names, shapes and dtypes only")
    parser.add_argument("--dequantize", action="store_true",
                        help="show quantized tensors as float32 real values (scale, zero point)")
    add_report_arguments(parser, NUMBERS, legacy_input=is_input_format)
    values = parser.add_argument_group("values")
    values.add_argument("--values", metavar="NAME", nargs="+", action="extend",
                        help="print the values of variables: names or globs, each with an "
                             "optional numpy-style index, e.g. 'conv1/kernel[0, :, :, 3]'")
    values.add_argument("--full", action="store_true", help="with --values: the whole array")
    values.add_argument("--npy", metavar="DIR",
                        help="with --values: write each selection to DIR/NAME.npy")
    values.add_argument("--npz", metavar="FILE",
                        help="with --values: write the selections to one .npz archive")
    parser.add_argument("--quiet", "-q", action="store_true",
                        help="print nothing (with --fail-if: report only through the exit status)")


def is_input_format(name: str) -> bool:
    """Whether `name` is a weights format (the old `show --format NAME`)."""
    from ..converters.registry import get
    try:
        get(name)
    except Exception:  # noqa: BLE001 (an unknown name, whichever error the registry uses)
        return False
    return True


def select(store: Store, include: Sequence[str] | None, no_optimizer: bool,
           exclude: Sequence[str] = (), weights_only: bool = False) -> list[str]:
    """Names of `store` matching any `include` glob (all if none) and no `exclude` glob, on
    the name, the original key or an alias, less the roles the flags leave out; a UsageError
    naming the closest names when a glob matches nothing or nothing is left (`names.select`)."""
    return select_names(store, include or (), exclude,
                        roles_option(no_optimizer, weights_only))


def run(args: argparse.Namespace) -> int:
    if args.output.startswith("input:"):  # `show --format keras-h5`: the old spelling of --from
        args.src_format, args.output = args.output[len("input:"):], "text"
        print(f"weightkit show: --format {args.src_format} names the input format; it is now "
              f"spelled --from {args.src_format} (--format names the report)", file=sys.stderr)
    if (args.npy or args.npz) and not args.values:
        raise UsageError("--npy and --npz export the selection of --values NAME...")
    gate_list = gates(args, NUMBERS)
    if args.values is None:
        check_html(args)
    with load(args.file, args.src_format) as store:
        if args.dequantize:
            store = dequantize(store)
        if args.values is not None:
            return show_values(store, args)
        names = select(store, args.include, args.no_optimizer, args.exclude, args.weights_only)
        stats: list[TensorStats | None] = [None] * len(names)
        tensors = store.tensors(names)
        if not args.no_stats or gate_list or args.output == "html":
            with Progress("show", sum(t.nbytes for t in tensors), enabled=not args.quiet) as bar:
                stats = stats_of(tensors, bar.advance)
        doc = show_document(store, names, stats, args.file, tensors)
        rows, shown = show_rows(doc, names, stats, args.by, args.sort, args.top)
        tripped = evaluate(gate_list, [(r["name"], r) for r in rows]) if gate_list else []
        if gate_list:
            doc["gates"] = [t.as_dict() for t in tripped]
        if not args.quiet or args.output_file:  # (--quiet prints nothing; -o FILE is written)
            _report(store, args, doc, shown, tripped, len(rows))
    return Exit.DIFFERENT if failed(tripped) else Exit.OK


def _report(store: Store, args: argparse.Namespace, doc: dict, shown: list[dict],
            tripped: list, total: int) -> None:
    with destination(args) as (out, colour_on):
        if args.output == "json":
            dump_json(doc, out)
        elif args.output == "html":
            from ..diffing.html import show_report
            out.write(show_report(store, doc, shown, args.by))
        elif args.output == "markdown":
            _print_markdown(doc, shown, args.by, out)
            cut = cut_line(len(shown), total, args.top)
            if cut:
                print(f"\n{cut}", file=out)
            markdown_gates(tripped, out)
        else:
            _print_table(doc, shown, args.by, out, colour_on)
            cut = cut_line(len(shown), total, args.top)
            if cut:
                print(cut, file=out)
            print_gates(tripped, out, colour_on)
    if tripped and (args.output != "text" or args.output_file) and not args.quiet:
        print_gates(tripped, sys.stderr, colour(sys.stderr, args.color))


def _cells(rows: list[dict], by: str, escape: Any, colour_on: bool = False
           ) -> tuple[list[str], list[tuple[str, ...]]]:
    """Headers and text cells of the table (or of the groups' table). A row is a tuple: the
    garbage collector stops tracking tuples of strings but not lists, and collecting 100,000
    rows of lists took ~0.1 s of this function's 0.45 s."""
    with_stats = bool(rows) and "min" in rows[0] and (by == "variable" or rows[0]["min"] is not None
                                                      or any(r["min"] is not None for r in rows))
    if by == "variable":
        headers = ["name", "shape", "dtype", "params"]
    else:
        headers = [by, "variables", "params"]
    if with_stats:
        headers += ["min", "max", "mean", "std", "zeros %", "nan/inf"]
    lines = []
    for r in rows:
        if by == "variable":
            name = escape(r["name"]) + ("" if r["role"] == "weight" else f" [{r['role']}]")
            line = (name, shape_text(r["shape"]), r["dtype"], f"{r['parameters']:,}")
        else:
            line = (escape(r["name"]), str(r["variables"]), f"{r['parameters']:,}")
        if with_stats:
            zeros = "" if r["zero_fraction"] is None else f"{100 * r['zero_fraction']:.1f}"
            bad = paint(f"{r['nan']}/{r['inf']}", "31", colour_on) if r["nan"] or r["inf"] else ""
            line += (num(r["min"]), num(r["max"]), num(r["mean"]), num(r["std"]), zeros, bad)
        lines.append(line)
    return headers, lines


def _totals_line(doc: dict) -> str:
    t = doc["totals"]
    return (f"{t['variables']:,} variable{'s' * (t['variables'] != 1)}, "
            f"{t['parameters']:,} parameter{'s' * (t['parameters'] != 1)}, "
            f"{human_bytes(t['bytes'])}")


def _print_table(doc: dict, rows: list[dict], by: str, out: Any, colour_on: bool) -> None:
    headers, lines = _cells(rows, by, safe, colour_on)
    print(f"{safe(doc['file'])}: {doc['format']}", file=out)
    if lines:
        print(table(lines, headers), file=out)
    print(_totals_line(doc), file=out)


def _print_markdown(doc: dict, rows: list[dict], by: str, out: Any) -> None:
    headers, lines = _cells(rows, by, md_code)
    print(f"#### weightkit show {md_code(doc['file'])} ({doc['format']})\n", file=out)
    print(f"**{_totals_line(doc)}**\n", file=out)
    if lines:
        lines = [[c if i == 0 else md_escape(c) for i, c in enumerate(line)] for line in lines]
        print(fold(table(lines, headers, markdown=True), len(lines),
                   "variables" if by == "variable" else f"{by}s"), file=out)


# --- values ------------------------------------------------------------------------------------

def _match(store: Store, spec: str) -> list[tuple[str, tuple | None, str]]:
    """(name, index or None, index text) for one `--values` item: an exact name (or original
    key, or alias: `Store.resolve`), a glob (`names.match`), either followed by a numpy-style
    index. Raises UsageError naming the closest names."""
    def exact(name: str) -> str | None:
        return store.resolve(name) if hasattr(store, "resolve") else \
            (name if name in store else None)

    def globbed(name: str) -> list[str]:
        try:
            return match(store, name, "--values")
        except UsageError:
            return []
    if exact(spec) is not None:
        return [(exact(spec), None, "")]
    target, index, text = spec, None, ""
    m = _SPEC.fullmatch(spec)
    if m and (exact(m.group(1)) is not None or globbed(m.group(1))):
        target, text = m.group(1), m.group(2)
        index = parse_index(text)
    if exact(target) is not None:
        return [(exact(target), index, text)]
    try:
        return [(n, index, text) for n in match(store, target, "--values")]
    except UsageError:
        unclosed = _UNCLOSED.fullmatch(spec)  # `w[0,:`: a name, then an index left open
        if unclosed and (exact(unclosed.group(1)) is not None or globbed(unclosed.group(1))):
            raise UsageError(f"--values {spec!r}: the index after {unclosed.group(1)!r} is not "
                             "closed; expected NAME[INDEX]") from None
        raise


def parse_index(text: str) -> tuple:
    """A numpy basic index from its text: integers, `start:stop:step` slices and `...`,
    separated by commas (parsed, never evaluated)."""
    parts = [p.strip() for p in text.split(",")]
    if parts and parts[-1] == "" and len(parts) > 1:
        parts = parts[:-1]  # a trailing comma, as numpy allows
    out: list = []
    for part in parts:
        if part == "...":
            out.append(Ellipsis)
            continue
        try:
            if ":" in part:
                bounds = part.split(":")
                if len(bounds) > 3:
                    raise ValueError
                out.append(slice(*(int(b) if b.strip() else None for b in bounds)))
            else:
                out.append(int(part))
        except ValueError:
            raise UsageError(f"--values: expected an index of integers, slices (a:b:c) and "
                             f"'...', received [{text}]") from None
    return tuple(out)


def read_selection(tensor: Tensor, index: tuple | None) -> np.ndarray:
    """The values `index` selects, reading only the rows of the first axis it needs."""
    if index is None:
        return tensor.read()
    probe = np.lib.stride_tricks.as_strided(np.zeros(1, np.int8), tensor.shape,
                                            (0,) * len(tensor.shape))
    try:
        huge = [i for i in index if isinstance(i, int) and not -2**63 <= i < 2**63]
        if huge:  # (numpy's message for it lists what an index may be)
            raise IndexError(f"index {huge[0]} is out of bounds")
        probe[index]  # validates the index against the shape without reading anything
    except (IndexError, TypeError, ValueError) as exc:
        raise UsageError(f"--values: index {_index_text(index)} does not fit shape "
                         f"{shape_text(tensor.shape)}: {exc}") from None
    if not index or index[0] is Ellipsis or not tensor.shape or index.count(Ellipsis) > 1:
        return tensor.read()[index]
    first, rest = index[0], index[1:]
    n = tensor.shape[0]
    if isinstance(first, int):
        i = first + n if first < 0 else first
        return tensor[i:i + 1][(0, *rest)]
    start, stop, step = first.indices(n)
    if step < 0:
        return tensor.read()[index]
    if stop <= start:
        return tensor.read()[index]  # empty: numpy gives the right shape
    return tensor[start:stop][(slice(None, None, step), *rest)]


def _index_text(index: tuple) -> str:
    def one(x: Any) -> str:
        if x is Ellipsis:
            return "..."
        if isinstance(x, slice):
            text = ":".join("" if v is None else str(v) for v in (x.start, x.stop))
            return text if x.step is None else f"{text}:{x.step}"
        return str(x)
    return "[" + ", ".join(one(x) for x in index) + "]"


def _exportable(array: np.ndarray) -> np.ndarray:
    """An array numpy's own .npy reader loads without ml_dtypes or pickle: bfloat16, float8
    and int4 widened to float32 / int8, strings as fixed-width bytes."""
    if array.dtype == object:
        items = [x if isinstance(x, bytes) else str(x).encode() for x in array.reshape(-1)]
        return np.array(items, dtype=bytes).reshape(array.shape)
    if array.dtype.kind == "V" or type(array.dtype).__module__.startswith("ml_dtypes") or \
            array.dtype.name in ("bfloat16", "int4", "uint4") or "float8" in array.dtype.name:
        return array.astype(np.int8 if "int" in array.dtype.name else np.float32)
    return array


def _json_values(array: np.ndarray) -> Any:
    if array.dtype == object:
        return [x.decode("utf-8", "backslashreplace") if isinstance(x, bytes) else str(x)
                for x in array.reshape(-1)] if array.ndim else \
            (array.item().decode("utf-8", "backslashreplace") if isinstance(array.item(), bytes)
             else str(array.item()))
    exported = _exportable(array)
    if exported.dtype.kind == "c":
        return {"real": exported.real.tolist(), "imag": exported.imag.tolist()}
    return exported.tolist()


def show_values(store: Store, args: argparse.Namespace) -> int:
    picked: list[tuple[str, tuple | None, str]] = []
    for spec in args.values:
        picked += _match(store, spec)
    labels = [name + (_index_text(index) if index is not None else "") for name, index, _ in picked]
    arrays = [read_selection(store[name], index) for name, index, _ in picked]
    if args.npy or args.npz:
        _export(args, labels, arrays)
    if args.quiet and not args.output_file:
        return Exit.OK
    if args.output != "json" and (args.npy or args.npz) and not args.output_file:
        return Exit.OK
    with destination(args) as (out, _):
        if args.output == "json":
            dump_json({"schema_version": SHOW_SCHEMA_VERSION, "file": args.file,
                       "format": store.format,
                       "values": [{"name": name, "index": _index_text(index)
                                   if index is not None else None, "shape": list(a.shape),
                                   "dtype": store[name].dtype_name, "values": _json_values(a)}
                                  for (name, index, _), a in zip(picked, arrays)]}, out)
            return Exit.OK
        options = {"threshold": sys.maxsize} if args.full else {}
        with np.printoptions(**options):
            for (name, index, _), array in zip(picked, arrays):
                # the index is parsed numbers (`_index_text`): only the name needs escaping,
                # and escaping the whole label showed `[::2]` as `[:\x3a2]`
                label = safe(name) + (_index_text(index) if index is not None else "")
                print(f"{label}: shape {tuple(array.shape)} {store[name].dtype_name}", file=out)
                text = (np.array2string(array, separator=", ") if array.dtype != object
                        else repr(array.tolist()))
                print(safe(text).replace("\\x0a", "\n"), file=out)
    return Exit.OK


def _file_name(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._\[\],:-]+", "_", label.replace(" ", "")).strip("._") or "_"


def _export(args: argparse.Namespace, labels: list[str], arrays: list[np.ndarray]) -> None:
    """--npy DIR (one file per selection) and --npz FILE, written atomically."""
    with atomic_output() as out:
        if args.npy:
            os.makedirs(args.npy, exist_ok=True)
            files: dict[str, str] = {}
            for label, array in zip(labels, arrays):
                base = _file_name(label) + ".npy"
                if base in files:
                    raise UsageError(f"--npy: {safe(label)!r} and {safe(files[base])!r} would "
                                     f"both be written to {base}")
                files[base] = label
                with open(out.path(os.path.join(args.npy, base)), "wb") as f:
                    np.save(f, _exportable(array), allow_pickle=False)
        if args.npz:
            if len(set(labels)) != len(labels):
                raise UsageError("--npz: the same selection twice")
            with open(out.path(args.npz), "wb") as f:
                np.savez(f, **{label: _exportable(a) for label, a in zip(labels, arrays)})
    if not args.quiet and args.output != "json":
        where = [f"{len(labels)} arrays to {args.npy}/" if args.npy else "",
                 f"{args.npz}" if args.npz else ""]
        print(f"wrote {' and '.join(w for w in where if w)}", file=sys.stderr)
