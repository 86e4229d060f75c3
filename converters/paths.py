"""Checks on input paths: only regular files and directories are read, and nothing a directory
input refers to may lie outside it."""
from __future__ import annotations

import difflib
import os
import stat

from .errors import UnsafeFileError, UsageError


def check_input(path: str) -> os.stat_result:
    """Stat an input, refusing what is missing, a FIFO, a socket or a device."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise UsageError("no such file or directory" + _nearby(path), path) from None
    except OSError as exc:
        raise UsageError(exc.strerror or str(exc), path) from None
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        raise UnsafeFileError("not a regular file or directory (FIFO, socket or device)", path)
    return st


def _nearby(path: str, limit: int = 10_000) -> str:
    """`; did you mean 'a', 'b'?` naming the entries of the directory `path` names whose names
    are closest to its last part (a checkpoint prefix by its `.index`), or "" when none is close
    (or the directory is missing or holds more than `limit` entries)."""
    parent, base = os.path.split(path)
    if not base:
        return ""
    try:
        with os.scandir(parent or ".") as entries:
            names = []
            for entry in entries:
                names.append(entry.name)
                if len(names) > limit:
                    return ""
    except OSError:
        return ""
    names += [n[:-len(".index")] for n in names if n.endswith(".index")]
    close = difflib.get_close_matches(base, list(dict.fromkeys(names)), n=3, cutoff=0.75)
    if not close:
        return ""
    return "; did you mean " + ", ".join(repr(os.path.join(parent, n)) for n in close) + "?"


def inside(directory: str, name: str) -> str:
    """`directory/name`, refusing a name (or a symlink on the way) that leads outside `directory`."""
    if os.path.isabs(name) or "\\" in name or "\x00" in name:
        raise UnsafeFileError(f"refusing path {name!r}: it must be relative", directory)
    root = os.path.realpath(directory)
    target = os.path.realpath(os.path.join(root, name))
    if target != root and not target.startswith(root + os.sep):
        raise UnsafeFileError(f"refusing path {name!r}: it leads outside the directory", directory)
    return target


def check_tree(directory: str) -> None:
    """Refuse a directory input containing a symlink that leaves it, or a special file."""
    root = os.path.realpath(directory)
    for parent, dirs, files in os.walk(root):
        for name in dirs:
            full = os.path.join(parent, name)
            if os.path.islink(full):
                inside(root, os.path.relpath(full, root))
        for name in files:  # (a list: `name in files` per entry made 20,000 files quadratic)
            full = os.path.join(parent, name)
            if os.path.islink(full):
                inside(root, os.path.relpath(full, root))
            try:
                mode = os.stat(full).st_mode
            except OSError:
                mode = 0
            if not stat.S_ISREG(mode):
                raise UnsafeFileError(f"{os.path.relpath(full, root)!r} is not a regular file",
                                      directory)


def same_file(a: str, b: str) -> bool:
    """True if both paths exist and are the same file or directory."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False
