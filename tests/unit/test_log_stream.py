"""configure_logging keeps working when sys.stderr is swapped and the old stream closed."""

from __future__ import annotations

import io
import sys

import pytest

from modstack.log import configure_logging


def test_log_lines_follow_the_current_stderr_after_the_old_one_is_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log = configure_logging("test-component")
    first = io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    log.warning("to the first stream")
    first.close()  # what pytest's capture does to a finished test's stream

    second = io.StringIO()
    monkeypatch.setattr(sys, "stderr", second)
    log.warning("to the second stream")
    assert "test-component: to the second stream" in second.getvalue()
