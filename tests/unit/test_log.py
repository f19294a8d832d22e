"""Logs are one JSON object per line, stamped with the component, whichever module logged."""

from __future__ import annotations

import json
import logging

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
