"""A real local S3 server (the stack's, on s3rver) and Tansu on S3 storage, as plain processes
for tests: start on a free port, SIGKILL, start again on the same port and folder.

    s3 = S3Server.in_folder(tmp / "s3").start()
    broker = start_tansu_on_s3(bootstrap, s3, tmp / "tansu.log")
    ...
    s3.kill(); s3.start()  # the objects are files: everything acknowledged is still there
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

from modstack.processes import (
    TANSU_BUCKET,
    TANSU_STOP_SIGNAL,
    BackgroundProcess,
    http_ok,
    kafka_ready,
    s3_storage,
    tansu_argv,
    tansu_s3_env,
)
from modstack.waits import free_port
from stack.node_tools import s3_server_argv, s3_server_env

START_TIMEOUT_S = 30.0


@dataclass
class S3Server:
    """s3rver on 127.0.0.1:`port`, its objects as files under `folder`."""

    folder: Path
    port: int
    buckets: tuple[str, ...] = (TANSU_BUCKET,)
    process: BackgroundProcess | None = field(default=None, repr=False)
    starts: int = 0

    @classmethod
    def in_folder(cls, folder: Path, buckets: tuple[str, ...] = (TANSU_BUCKET,)) -> S3Server:
        """A server (not started yet) on a free port keeping its objects under `folder`."""
        return cls(folder=folder, port=free_port(), buckets=buckets)

    @property
    def endpoint(self) -> str:
        """http://127.0.0.1:PORT, what clients set as their S3 endpoint."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> S3Server:
        """Start (again) on the same port and folder; returns once it answers HTTP."""
        (self.folder / "objects").mkdir(parents=True, exist_ok=True)
        self.starts += 1
        self.process = BackgroundProcess(
            "S3 server",
            s3_server_argv(self.port, self.folder / "objects", self.buckets),
            self.folder / f"s3-server-{self.starts}.log",
            ready=lambda: http_ok(f"{self.endpoint}/"),
            timeout_s=START_TIMEOUT_S,
            env=s3_server_env(),
        ).start()
        return self

    def kill(self) -> None:
        """SIGKILL: nothing is flushed (an object is on disk once its PUT was answered)."""
        if self.process is not None and self.process.proc is not None:
            os.killpg(self.process.proc.pid, signal.SIGKILL)
            self.process.proc.wait(timeout=10)

    def stop(self) -> None:
        """Stop it (SIGTERM to its process group, SIGKILL after a bound)."""
        if self.process is not None:
            self.process.stop()


def tansu_on_s3(
    bootstrap: str, s3: S3Server, log_path: Path, cluster_id: str | None = None
) -> BackgroundProcess:
    """A Tansu broker (not started yet) on the port of `bootstrap` keeping topics, consumer
    groups and offsets in `s3`'s tansu bucket, under `cluster_id` when given."""
    port = int(bootstrap.rsplit(":", 1)[1])
    return BackgroundProcess(
        "Tansu broker (S3 storage)",
        tansu_argv(port, storage=s3_storage(TANSU_BUCKET), cluster_id=cluster_id),
        log_path,
        ready=lambda: kafka_ready(bootstrap),
        timeout_s=START_TIMEOUT_S,
        env=tansu_s3_env(s3.endpoint),
        stop_signal=TANSU_STOP_SIGNAL,
    )
