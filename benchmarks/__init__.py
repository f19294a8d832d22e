"""Benchmarks that print numbers: `python -m benchmarks.<name>`."""
