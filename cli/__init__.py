"""The command line: `weightkit COMMAND ...` and `wdiff A B`. Thin wrappers over the library."""
