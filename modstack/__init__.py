"""ModStack shared core: settings, event schemas, names, Kafka helpers, logging, metrics."""

__version__ = "0.1.0"
