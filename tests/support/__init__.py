"""Helpers several test modules share (real processes, no mocks)."""
