"""A real Prometheus for the tests that read metrics the way the canary and alerts do."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from modstack.processes import BackgroundProcess, http_ok
from modstack.waits import free_port


@contextmanager
def running_prometheus(workdir: Path, config: str) -> Iterator[str]:
    """Debian's Prometheus with `config` as its prometheus.yml (in `workdir`, with its TSDB and
    log) on a free loopback port, until the block ends; its URL."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus not found: `apt-get install -y --no-install-recommends prometheus`")
    (workdir / "prometheus.yml").write_text(config)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [
        binary,
        f"--config.file={workdir / 'prometheus.yml'}",
        f"--storage.tsdb.path={workdir / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with BackgroundProcess(
        "Prometheus",
        argv,
        workdir / "prometheus.log",
        ready=lambda: http_ok(f"{url}/-/ready"),
        timeout_s=30,
    ):
        yield url
