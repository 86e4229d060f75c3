"""Regenerate the TFLite schema code in this package from a pinned `schema.fbs`.

    python -m weightkit.converters.tflite_schema.regenerate [--schema PATH]

Needs `flatc` 2.0.8 (Debian bookworm: `apt-get install flatbuffers-compiler`) on PATH. Without
`--schema`, the schema is downloaded from GitHub at the pinned commit; either way its SHA-256
must be the pinned one. Writes, next to this file:

- `schema_generated.py`: `flatc --python --gen-object-api --gen-onefile` (readers, builders and
  the object API: `ModelT.InitFromPackedBuf`, `ModelT.Pack`);
- `layout.py`: every table's fields by id, read from the binary schema `flatc -b --schema`
  writes (reflection), for the bounds-checking verifier (`converters/flatbuffer.py`).

flatc 2.0.8 does not parse `(deprecated)` on enum values, union members and tables (newer flatc
does); those three attributes are removed before compiling. They change no encoding: values,
union type codes and field ids stay. `(deprecated)` on fields is kept (it keeps their ids).
"""
from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

REPOSITORY = "google-ai-edge/LiteRT"
COMMIT = "3647910a70fe34d0ee0cb96e2e00a421d77bf553"
PATH = "tflite/converter/schema/schema.fbs"
SHA256 = "8b9b424c923124df1e722d3d0f52fa273989207053875d07a9d582d51a7e0fa7"
URL = f"https://raw.githubusercontent.com/{REPOSITORY}/{COMMIT}/{PATH}"
FLATC_VERSION = "2.0.8"
HERE = Path(__file__).resolve().parent

HEADER = f'''# Generated code: do not edit. Regenerate with
#     python -m weightkit.converters.tflite_schema.regenerate
# from {REPOSITORY} {PATH} at commit {COMMIT}
# (sha256 {SHA256}; Apache License 2.0, Copyright The TensorFlow Authors)
# by flatc {FLATC_VERSION}: {{command}}
# after removing `(deprecated)` from enum values, union members and tables (see regenerate.py).
'''

# reflection.fbs (flatbuffers 2.0.8): the field slots and base types this script reads.
_SCHEMA_OBJECTS, _SCHEMA_ENUMS = 0, 1
_OBJECT_NAME, _OBJECT_FIELDS, _OBJECT_IS_STRUCT, _OBJECT_BYTESIZE = 0, 1, 2, 4
_FIELD_NAME, _FIELD_TYPE, _FIELD_ID, _FIELD_DEPRECATED = 0, 1, 2, 6
_TYPE_BASE, _TYPE_ELEMENT, _TYPE_INDEX = 0, 1, 2
_ENUM_NAME, _ENUM_VALUES, _ENUM_IS_UNION = 0, 1, 2
_ENUMVAL_NAME, _ENUMVAL_VALUE, _ENUMVAL_UNION_TYPE = 0, 1, 3
_BASE_TYPES = ("None", "UType", "Bool", "Byte", "UByte", "Short", "UShort", "Int", "UInt", "Long",
               "ULong", "Float", "Double", "String", "Vector", "Obj", "Union", "Array")
_SIZES = {"UType": 1, "Bool": 1, "Byte": 1, "UByte": 1, "Short": 2, "UShort": 2, "Int": 4,
          "UInt": 4, "Long": 8, "ULong": 8, "Float": 4, "Double": 8}


def patch(text: str) -> str:
    """The schema without the `(deprecated)` attributes flatc 2.0.8 cannot parse."""
    text = re.sub(r"^(\s*\w+\s*=\s*-?\d+)\s*\(deprecated\)\s*,", r"\1,", text, flags=re.M)
    text = re.sub(r"^(\s*\w+)\s*\(deprecated\)\s*,", r"\1,", text, flags=re.M)
    return re.sub(r"^table\s+(\w+)\s*\(deprecated\)\s*\{", r"table \1 {", text, flags=re.M)


def _run(command: list[str], cwd: str) -> None:
    subprocess.run(command, cwd=cwd, check=True)


def layout_from_bfbs(data: bytes) -> tuple[dict[str, tuple], dict[str, dict[int, str]]]:
    """{table: ((field name, kind, argument, deprecated), ...) by field id} from a binary schema,
    and {enum: {value: name}} of its (non-union) enums.

    kinds: "scalar" (argument: byte size), "struct" (byte size), "string", "table" (table name),
    "vector" (element byte size), "vector_string", "vector_table" (table name),
    "union" ((id of its type field, {type code: table name})).
    """
    import flatbuffers
    from flatbuffers import number_types as N
    from flatbuffers.table import Table

    def table(pos: int) -> Table:
        return Table(data, pos)

    def field(t: Table, slot: int) -> int:
        return t.Offset(4 + 2 * slot)

    def scalar(t: Table, slot: int, flags, default=0):
        o = field(t, slot)
        return t.Get(flags, t.Pos + o) if o else default

    def string(t: Table, slot: int) -> str:
        return t.String(t.Pos + field(t, slot)).decode()

    def child(t: Table, slot: int) -> Table | None:
        o = field(t, slot)
        return table(t.Indirect(t.Pos + o)) if o else None

    def tables(t: Table, slot: int) -> list[Table]:
        o = field(t, slot)
        if not o:
            return []
        start = t.Vector(o)
        return [table(t.Indirect(start + 4 * i)) for i in range(t.VectorLen(o))]

    root = table(flatbuffers.encode.Get(flatbuffers.packer.uoffset, data, 0))
    objects = tables(root, _SCHEMA_OBJECTS)
    enums = tables(root, _SCHEMA_ENUMS)

    def short(name: str) -> str:
        return name.rsplit(".", 1)[-1]

    def type_of(t: Table) -> tuple[str, str, int]:
        return (_BASE_TYPES[scalar(t, _TYPE_BASE, N.Int8Flags)],
                _BASE_TYPES[scalar(t, _TYPE_ELEMENT, N.Int8Flags)],
                scalar(t, _TYPE_INDEX, N.Int32Flags, -1))

    unions = {}
    named: dict[str, dict[int, str]] = {}
    for i, enum in enumerate(enums):
        if not scalar(enum, _ENUM_IS_UNION, N.BoolFlags):
            named[short(string(enum, _ENUM_NAME))] = {
                scalar(v, _ENUMVAL_VALUE, N.Int64Flags): string(v, _ENUMVAL_NAME)
                for v in tables(enum, _ENUM_VALUES)}
        if scalar(enum, _ENUM_IS_UNION, N.BoolFlags):
            members = {}
            for value in tables(enum, _ENUM_VALUES):
                code = scalar(value, _ENUMVAL_VALUE, N.Int64Flags)
                kind = child(value, _ENUMVAL_UNION_TYPE)
                if code and kind is not None:
                    members[code] = short(string(objects[type_of(kind)[2]], _OBJECT_NAME))
            unions[i] = members
    layout = {}
    for obj in objects:
        if scalar(obj, _OBJECT_IS_STRUCT, N.BoolFlags):
            continue
        fields = {}
        for f in tables(obj, _OBJECT_FIELDS):
            base, element, index = type_of(child(f, _FIELD_TYPE))
            name = string(f, _FIELD_NAME)
            fid = scalar(f, _FIELD_ID, N.Uint16Flags)
            deprecated = bool(scalar(f, _FIELD_DEPRECATED, N.BoolFlags))
            if base in _SIZES:
                spec = ("scalar", _SIZES[base])
            elif base == "String":
                spec = ("string", None)
            elif base == "Obj":
                target = objects[index]
                spec = (("struct", scalar(target, _OBJECT_BYTESIZE, N.Int32Flags))
                        if scalar(target, _OBJECT_IS_STRUCT, N.BoolFlags)
                        else ("table", short(string(target, _OBJECT_NAME))))
            elif base == "Union":
                spec = ("union", (fid - 1, unions[index]))
            elif base == "Vector" and element in _SIZES:
                spec = ("vector", _SIZES[element])
            elif base == "Vector" and element == "String":
                spec = ("vector_string", None)
            elif base == "Vector" and element == "Obj":
                target = objects[index]
                spec = (("vector", scalar(target, _OBJECT_BYTESIZE, N.Int32Flags))
                        if scalar(target, _OBJECT_IS_STRUCT, N.BoolFlags)
                        else ("vector_table", short(string(target, _OBJECT_NAME))))
            else:
                raise SystemExit(f"{string(obj, _OBJECT_NAME)}.{name}: unsupported type {base}/{element}")
            fields[fid] = (name, *spec, deprecated)
        if sorted(fields) != list(range(len(fields))):
            raise SystemExit(f"{string(obj, _OBJECT_NAME)}: field ids are not 0..n-1")
        layout[short(string(obj, _OBJECT_NAME))] = tuple(fields[i] for i in range(len(fields)))
    return layout, named


def _check_against_generated(layout: dict[str, tuple], generated: str) -> None:
    """Every table's field count agrees with the generated builder (`XStart` -> StartObject(n))."""
    for name, fields in layout.items():
        found = re.search(rf"^def {name}Start\(builder\):\s*builder\.StartObject\((\d+)\)",
                          generated, flags=re.M)
        if found is None or int(found.group(1)) != len(fields):
            raise SystemExit(f"layout of {name} disagrees with the generated code")


def write_layout(layout: dict[str, tuple], enums: dict[str, dict[int, str]],
                 command: str) -> str:
    lines = [HEADER.format(command=command).rstrip("\n"),
             '"""Fields of every table of the TFLite schema, by field id: (name, kind, argument,',
             'deprecated), see regenerate.py `layout_from_bfbs` for the kinds; and the names of',
             'the values of its enums."""',
             "", "ROOT = \"Model\"", "FILE_IDENTIFIER = b\"TFL3\"", "", "TABLES = {"]
    for name in sorted(layout):
        lines.append(f"    {name!r}: (")
        for entry in layout[name]:
            lines.append(f"        {entry!r},")
        lines.append("    ),")
    lines.append("}")
    lines += ["", "ENUMS = {"]
    for name in sorted(enums):
        lines.append(f"    {name!r}: {{")
        for value, label in sorted(enums[name].items()):
            lines.append(f"        {value}: {label!r},")
        lines.append("    },")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schema", type=Path, help=f"a local copy of {PATH} (default: download)")
    parser.add_argument("--out", type=Path, default=HERE, help="output directory (default: here)")
    args = parser.parse_args(argv)
    if shutil.which("flatc") is None:
        raise SystemExit("flatc not found (apt-get install flatbuffers-compiler)")
    version = subprocess.run(["flatc", "--version"], capture_output=True, text=True).stdout.split()
    if version[-1:] != [FLATC_VERSION]:
        raise SystemExit(f"expected flatc {FLATC_VERSION}, found {' '.join(version)}")
    if args.schema is not None:
        text = args.schema.read_bytes()
    else:
        with urllib.request.urlopen(URL, timeout=60) as response:
            text = response.read()
    if hashlib.sha256(text).hexdigest() != SHA256:
        raise SystemExit(f"schema SHA-256 is not {SHA256}: not the pinned schema")
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "schema.fbs").write_text(patch(text.decode("utf-8")), encoding="utf-8")
        python = ["flatc", "--python", "--gen-object-api", "--gen-onefile", "schema.fbs"]
        _run(python, tmp)
        binary = ["flatc", "-b", "--schema", "schema.fbs"]
        _run(binary, tmp)
        generated = Path(tmp, "schema_generated.py").read_text(encoding="utf-8")
        layout, enums = layout_from_bfbs(Path(tmp, "schema.bfbs").read_bytes())
    _check_against_generated(layout, generated)
    (args.out / "schema_generated.py").write_text(
        HEADER.format(command=" ".join(python)) + "# flake8: noqa\n" + generated, encoding="utf-8")
    (args.out / "layout.py").write_text(write_layout(layout, enums, " ".join(binary)),
                                        encoding="utf-8")
    print(f"wrote schema_generated.py and layout.py ({len(layout)} tables) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
