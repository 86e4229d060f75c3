"""A pytest plugin: the repository root is collected as a plain directory.

The root is the `weightkit` package (its `__init__.py` makes pytest see a package there). Left to
itself pytest imports that `__init__.py` under the checkout folder's name to look for
`setup_module`, which fails in a folder whose name is not an identifier (`weightkit-ci`) and
otherwise imports weightkit a second time under another name. Tests import the installed
`weightkit`.
"""
from __future__ import annotations

from pathlib import Path

import pytest


def pytest_collect_directory(path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if path == parent.config.rootpath:
        return pytest.Dir.from_parent(parent, path=path)
    return None
