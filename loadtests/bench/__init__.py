"""Benchmarks, one module each; every one prints a table and writes JSON."""
