"""`python -m weightkit.cli ...`: the `weightkit` command, also what git's diff driver runs."""
import sys

from .main import main

sys.exit(main(prog="weightkit"))
