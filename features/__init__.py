"""The Feast feature repo (definitions only: see definitions.py and feature_store.yaml)."""
