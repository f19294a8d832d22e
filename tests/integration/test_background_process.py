"""The test-side process runner: a clear error for a process that exits while starting, and
no broker left behind when the process that started it dies without cleaning up."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from modstack.processes import BackgroundProcess, child_env
from modstack.waits import free_port, port_open, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.backends_chosen]


def test_a_process_that_exits_while_starting_fails_fast_with_its_log(tmp_path: Path) -> None:
    process = BackgroundProcess(
        "broken server",
        [sys.executable, "-c", "print('bad flag --frobnicate', flush=True); exit(2)"],
        tmp_path / "broken.log",
        ready=lambda: False,
        timeout_s=60,
    )
    with pytest.raises(RuntimeError) as excinfo:
        process.start()
    message = str(excinfo.value)
    assert "broken server exited with code 2" in message
    assert "bad flag --frobnicate" in message  # the log tail, not just the exit code


_ABANDON = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from modstack.processes import (
        TANSU_STOP_SIGNAL, BackgroundProcess, kafka_ready, tansu_argv,
    )

    port, log = int(sys.argv[1]), Path(sys.argv[2])
    BackgroundProcess(
        "Tansu", tansu_argv(port), log,
        ready=lambda: kafka_ready(f"127.0.0.1:{port}"), stop_signal=TANSU_STOP_SIGNAL,
    ).start()
    os._exit(0)  # die like a killed test run: no teardown at all
    """
)


def test_a_broker_dies_with_the_process_that_started_it(tmp_path: Path) -> None:
    port = free_port()
    subprocess.run(
        [sys.executable, "-c", _ABANDON, str(port), str(tmp_path / "tansu.log")],
        env=child_env(),
        check=True,
        timeout=60,
    )
    wait_until(lambda: not port_open("127.0.0.1", port), 10, f"port {port} to close")
