"""Comparing and summarising stores: plain data out, rendering elsewhere.

This folder installs as `weightkit.diffing` (pyproject's `package-dir`): `weightkit.diff` is
the function that compares two files or stores.
"""
if __name__ != "weightkit.diffing":
    raise ImportError(f"weightkit's diff/ folder is the package weightkit.diffing; "
                      f"import that, not {__name__}")
