"""Comparing and summarising stores: plain data out, rendering elsewhere."""
