"""`weightkit git-config [--global] [--disable]`: make `git diff` and `git log -p` show weights.

Writes, idempotently, a `weightkit` diff driver to git config (`diff.weightkit.command` for
`git diff`, `diff.weightkit.textconv` for `git log -p` and friends) and `diff=weightkit` lines
for the weight file patterns to `.gitattributes` (with `--global`: the global attributes file).
`--disable` removes exactly what it added.
"""
from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path

from ..converters.errors import UsageError
from ..converters.registry import git_patterns
from .text import safe

HELP = "set up git so that diffs of weights files show a weight table (idempotent)"

DRIVER = "weightkit"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--global", dest="global_", action="store_true",
                        help="for every repository of this user (global git config and attributes)")
    parser.add_argument("--disable", action="store_true", help="remove the setup again")


def command() -> str:
    """The shell command git runs: this interpreter with weightkit's CLI."""
    return f"{shlex.quote(sys.executable)} -m weightkit.cli git-diff-driver"


def _git(*args: str, cwd: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    try:
        result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError:
        raise UsageError("git is not installed (expected a `git` command on PATH)") from None
    if check and result.returncode != 0:
        message = (result.stderr.strip().splitlines() or ["failed"])[-1]
        raise UsageError(f"git {args[0]}: {safe(message)}")
    return result


def attributes_file(global_: bool) -> Path:
    """The .gitattributes of the current repository, or the user's global attributes file."""
    if not global_:
        top = _git("rev-parse", "--show-toplevel", check=False)
        if top.returncode != 0:
            raise UsageError("not inside a git repository (use --global for all repositories)",
                             os.getcwd())
        return Path(top.stdout.strip()) / ".gitattributes"
    configured = _git("config", "--global", "--get", "core.attributesFile", check=False).stdout.strip()
    if configured:
        return Path(os.path.expanduser(configured))
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "git" / "attributes"


def attribute_lines() -> list[str]:
    return [f"{pattern} diff={DRIVER}" for pattern in git_patterns()]


def update_attributes(path: Path, enable: bool) -> bool:
    """Add (or remove) our lines; returns True if the file changed."""
    old = path.read_text() if path.exists() else ""
    lines = old.splitlines()
    ours = attribute_lines()
    if enable:
        new_lines = lines + [line for line in ours if line not in lines]
    else:
        new_lines = [line for line in lines if line not in ours]
    new = "\n".join(new_lines) + "\n" if new_lines else ""
    if new == old:
        return False
    if not enable and not new and path.exists() and not _tracked(path):
        path.unlink()  # ours alone and untracked: we made it
        return True
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(new)
    return True


def _tracked(path: Path) -> bool:
    """Whether git tracks `path` (then --disable leaves it, emptied: deleting a tracked file
    is a change the user did not ask for)."""
    done = _git("ls-files", "--error-unmatch", path.name, cwd=str(path.parent), check=False)
    return done.returncode == 0


def run(args: argparse.Namespace) -> int:
    scope = "--global" if args.global_ else "--local"
    attributes = attributes_file(args.global_)
    if args.disable:
        if _git("config", scope, "--get-regexp", rf"^diff\.{DRIVER}\.", check=False).stdout:
            _git("config", scope, "--remove-section", f"diff.{DRIVER}")
        changed = update_attributes(attributes, enable=False)
        print(f"weightkit diff driver removed ({'global' if args.global_ else 'this repository'}"
              f"{'; ' + safe(attributes) + ' updated' if changed else ''})")
        return 0
    _git("config", scope, f"diff.{DRIVER}.command", command())
    _git("config", scope, f"diff.{DRIVER}.textconv", command() + " --textconv")
    update_attributes(attributes, enable=True)
    print(f"weightkit diff driver set for {' '.join(git_patterns())} "
          f"({'global' if args.global_ else 'this repository'}; attributes in {safe(attributes)})")
    return 0
