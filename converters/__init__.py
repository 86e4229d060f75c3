"""Format readers and writers around one canonical store (see `store.py` and `registry.py`)."""
