"""The stack's pieces as real processes for the fault and integration tests: start, SIGKILL,
and read what their /metrics count."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from modstack.processes import BackgroundProcess, http_ok, kafka_ready, tansu_argv

REPO_ROOT = Path(__file__).resolve().parents[2]


def kill(process: BackgroundProcess) -> None:
    """SIGKILL the process group: no shutdown hook runs, nothing is flushed or committed."""
    assert process.proc is not None
    os.killpg(process.proc.pid, signal.SIGKILL)
    process.proc.wait(timeout=10)


def metric_total(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of `name` in the exposition `text` whose labels include `labels`."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def start_tansu(bootstrap: str, log_path: Path) -> BackgroundProcess:
    """A memory-only Tansu broker on the port of `bootstrap` (127.0.0.1:port), started."""
    port = int(bootstrap.rsplit(":", 1)[1])
    return BackgroundProcess(
        "Tansu broker", tansu_argv(port), log_path, ready=lambda: kafka_ready(bootstrap)
    ).start()


def module_process(
    name: str, module: str, log_dir: Path, ready_url: str, env: dict[str, str]
) -> BackgroundProcess:
    """`python -m module` from the repo root, logging to log_dir/name.log, ready once
    `ready_url` answers 200 (90 s at the most); not started yet."""
    return BackgroundProcess(
        name,
        [sys.executable, "-m", module],
        log_dir / f"{name}.log",
        ready=lambda: http_ok(ready_url),
        timeout_s=90,
        env=env,
        cwd=REPO_ROOT,
    )


def start_module(
    name: str, module: str, log_dir: Path, ready_url: str, env: dict[str, str]
) -> BackgroundProcess:
    """`module_process`, started (returns once `ready_url` answers 200)."""
    return module_process(name, module, log_dir, ready_url, env).start()
