"""The local stack: supervisord programs, preflight checks, system packages."""
