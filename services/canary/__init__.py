"""Canary controller: steps a challenger's traffic, analyses each step, promotes or rolls back."""
