"""Serving API: moderation decisions with champion/challenger canary routing (port 8000)."""
