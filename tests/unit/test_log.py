"""Logs are one JSON object per line, stamped with the component, whichever module logged;
configure_logging keeps working when sys.stderr is swapped and the old stream closed."""

from __future__ import annotations

import io
import json
import logging
import sys

import pytest

from modstack.log import configure_logging


def test_json_record_names_component_logger_and_severity(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("serving", log_format="json")
    logging.getLogger("services.serving.model_store").warning("loaded %s", "v3")
    record = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert record["component"] == "serving"
    assert record["logger"] == "services.serving.model_store"
    assert record["severity"] == "WARNING"
    assert record["message"] == "loaded v3"
    assert "time" in record


def test_exception_traceback_stays_inside_the_one_json_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("processor", log_format="json")
    try:
        raise ZeroDivisionError("boom")
    except ZeroDivisionError:
        logging.getLogger("services.processor.service").exception("batch failed")
    lines = capsys.readouterr().err.strip().splitlines()
    record = json.loads(lines[-1])
    assert "ZeroDivisionError: boom" in record["exc_info"]


def test_configuring_twice_keeps_one_handler(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("canary", log_format="json")
    configure_logging("canary", log_format="text")
    logging.getLogger("services.canary.loop").error("step failed")
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "canary services.canary.loop: step failed" in err[0]


def test_log_lines_follow_the_current_stderr_after_the_old_one_is_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log = configure_logging("test-component", log_format="text")
    first = io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    log.warning("to the first stream")
    first.close()  # what pytest's capture does to a finished test's stream

    second = io.StringIO()
    monkeypatch.setattr(sys, "stderr", second)
    log.warning("to the second stream")
    assert "test-component: to the second stream" in second.getvalue()
