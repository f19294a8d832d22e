"""The Prometheus config and alert rules are valid, and every rule behaves as its unit tests
say (`promtool check` / `promtool test rules`, offline)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

PROMETHEUS_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
TEST_FILES = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))

pytestmark = [pytest.mark.integration, pytest.mark.backends_chosen]


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool not found: install Debian's prometheus package "
            "(`apt-get install -y --no-install-recommends prometheus`, done by `make setup`)"
        )
    return path


def run_promtool(*args: str) -> str:
    result = subprocess.run(
        [promtool(), *args], capture_output=True, text=True, timeout=60, cwd=PROMETHEUS_DIR
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"promtool {' '.join(args)} failed:\n{output}"
    return output


def test_prometheus_config_is_valid_and_scrapes_every_service() -> None:
    run_promtool("check", "config", "prometheus.yml")
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    jobs = {
        job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]
    }
    assert jobs == {
        "serving": ["127.0.0.1:8000"],
        "ingestion": ["127.0.0.1:8001"],
        "monitoring": ["127.0.0.1:8002"],
        "canary": ["127.0.0.1:8003"],
        "processor": ["127.0.0.1:8004"],
        "review": ["127.0.0.1:8005"],
    }


def test_alert_rules_pass_promtool_check() -> None:
    assert RULE_FILES, f"no rule files under {PROMETHEUS_DIR / 'rules'}"
    run_promtool("check", "rules", *map(str, RULE_FILES))


def test_every_alert_has_a_promtool_unit_test() -> None:
    alerts = {
        rule["alert"]
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    tested = {
        case["alertname"]
        for path in TEST_FILES
        for test in yaml.safe_load(path.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")  # a test that only expects silence proves nothing alone
    }
    assert {
        "ModelDataDrift",
        "ModelPredictionDrift",
        "ServingErrorRateHigh",
        "ServingLatencyP99High",
        "ConsumerLagGrowing",
        "CanaryRolledBack",
        "MonitoringStalled",
        "ModelBlockPrecisionLow",
    } <= alerts
    assert alerts - tested == set(), "alerts without a test in which they fire"


def test_alert_rule_unit_tests_pass_including_drift_firing() -> None:
    output = run_promtool("test", "rules", *map(str, TEST_FILES))
    assert output.count("SUCCESS") == len(TEST_FILES), output
