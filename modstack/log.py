"""One logging set-up for every component: `configure_logging("serving")`.

Each record is one JSON object on stderr (`time`, `severity`, `component`, `logger`, `message`,
and `exc_info` when there is one), the shape container platforms (Kubernetes, Cloud Logging,
Loki) parse without a custom pattern; on a terminal, one plain line per record for a person
(`LOG_FORMAT` = auto, json or text).
"""

from __future__ import annotations

import logging
import sys
from typing import Literal, TextIO

from pythonjsonlogger.json import JsonFormatter

from modstack.settings import get_settings

LogFormat = Literal["auto", "json", "text"]
_TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(component)s %(name)s: %(message)s"
_JSON_FIELDS = ("asctime", "levelname", "component", "name", "message")
_JSON_NAMES = {"asctime": "time", "levelname": "severity", "name": "logger"}


class _CurrentStderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever `sys.stderr` is at emit time. A handler bound to the stderr of the
    moment breaks when that stream is swapped and closed (pytest's capture does this per
    test): "ValueError: I/O operation on closed file" from every later log call."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


class _ComponentFilter(logging.Filter):
    """Stamps every record with the component that configured logging (serving, processor, ...),
    whichever module's logger wrote it."""

    def __init__(self, component: str) -> None:
        super().__init__()
        self.component = component

    def filter(self, record: logging.LogRecord) -> bool:
        record.component = self.component
        return True


def _formatter(log_format: LogFormat) -> logging.Formatter:
    if log_format == "auto":
        log_format = "text" if sys.stderr.isatty() else "json"
    if log_format == "text":
        return logging.Formatter(_TEXT_FORMAT)
    return JsonFormatter(
        list(_JSON_FIELDS),
        rename_fields=_JSON_NAMES,
        datefmt="%Y-%m-%dT%H:%M:%S%z",
        json_ensure_ascii=False,
    )


def configure_logging(
    component: str, level: str = "INFO", log_format: LogFormat | None = None
) -> logging.Logger:
    """Log to stderr, one record per line, stamped with `component`; returns its logger.

    Modules log through `logging.getLogger(__name__)`; the component says which process wrote
    the line. Calling it again (tests start several apps in one process) replaces the handler.
    `log_format` defaults to the LOG_FORMAT setting (auto: text on a terminal, else JSON).
    """
    if log_format is None:
        log_format = get_settings().log_format
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_modstack", False)]:
        root.removeHandler(handler)
    handler = _CurrentStderrHandler()
    handler.setFormatter(_formatter(log_format))
    handler.addFilter(_ComponentFilter(component))
    handler._modstack = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    # kafka-python logs every reconnect attempt at INFO/WARNING; our own errors say more.
    logging.getLogger("kafka").setLevel(logging.ERROR)
    # Feast logs "Registry cache expired, so refreshing" at INFO on every registry read.
    logging.getLogger("feast.infra.registry.registry").setLevel(logging.WARNING)
    return logging.getLogger(component)
