"""One logging set-up for every component: `configure_logging("serving")`."""

from __future__ import annotations

import logging
import sys

_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class _CurrentStderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at emit time. A handler bound to the stderr of the
    moment breaks when that stream is swapped and closed (pytest's capture does this per
    test): "ValueError: I/O operation on closed file" from every later log call."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


def configure_logging(component: str, level: str = "INFO") -> logging.Logger:
    """Log to stderr in one line per record; returns the component's logger."""
    root = logging.getLogger()
    if not any(getattr(h, "_modstack", False) for h in root.handlers):
        handler = _CurrentStderrHandler()
        handler.setFormatter(logging.Formatter(_FORMAT))
        handler._modstack = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level.upper())
    # kafka-python logs every reconnect attempt at INFO/WARNING; our own errors say more.
    logging.getLogger("kafka").setLevel(logging.ERROR)
    # Feast logs "Registry cache expired, so refreshing" at INFO on every registry read.
    logging.getLogger("feast.infra.registry.registry").setLevel(logging.WARNING)
    return logging.getLogger(component)
