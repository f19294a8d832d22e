"""`modstack up --only kafka,mlflow` / `status` / `down` for real, on free ports in a tmp dir:
the broker and MLflow come up healthy, a round trip goes through the broker with the shared
helpers, and `down` leaves nothing listening."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from modstack.kafka import make_consumer, make_producer
from modstack.names import ALL_TOPICS, TOPIC_MESSAGES
from modstack.processes import child_env
from modstack.waits import free_port, port_open, wait_until
from stack.lifecycle import UpResult, shutdown, start_and_wait
from stack.programs import Program, StackPaths
from stack.supervisor import pid_alive, render_supervisord_conf, start_supervisord

pytestmark = pytest.mark.integration


def _modstack(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stack", *args],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_up_only_kafka_and_mlflow_then_down_leaves_nothing_running(tmp_path: Path) -> None:
    kafka_port, mlflow_port = free_port(), free_port()
    env = child_env(
        {
            "RUN_DIR": str(tmp_path / "run"),
            "DATA_DIR": str(tmp_path / "data"),
            "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{kafka_port}",
            "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{mlflow_port}",
        }
    )
    bootstrap = f"127.0.0.1:{kafka_port}"
    pidfile = tmp_path / "run" / "supervisord.pid"
    try:
        started = time.monotonic()
        up = _modstack(env, tmp_path, "up", "--only", "kafka,mlflow")
        print(f"\n[stack] up (kafka, mlflow) in {time.monotonic() - started:.1f} s")
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"[ok] kafka: healthy on 127.0.0.1:{kafka_port}" in up.stdout
        assert f"[ok] mlflow: healthy on 127.0.0.1:{mlflow_port}" in up.stdout
        supervisord_pid = int(pidfile.read_text())

        status = _modstack(env, tmp_path, "status")
        assert status.returncode == 0, status.stdout + status.stderr
        rows = {line.split()[1]: line for line in status.stdout.splitlines() if "│" in line}
        assert "RUNNING" in rows["kafka"] and "ok" in rows["kafka"]
        assert "RUNNING" in rows["mlflow"] and "ok" in rows["mlflow"]
        assert "STOPPED" in rows["serving"]  # not asked for, not started

        # the broker has the topics, and a produce/consume round trip works through it
        producer = make_producer(bootstrap)
        producer.send(TOPIC_MESSAGES, key="alice@example.com", value=b'{"hello": 1}')
        producer.flush(timeout=10)
        producer.close()
        consumer = make_consumer([TOPIC_MESSAGES], "stack-test", bootstrap)
        try:
            assert set(ALL_TOPICS) <= consumer.topics()
            records: list = []
            wait_until(
                lambda: (
                    records.extend(
                        r for batch in consumer.poll(timeout_ms=500).values() for r in batch
                    )
                    or records
                ),
                20,
                "the record through the stack's broker",
                interval_s=0,
            )
        finally:
            consumer.close()
        assert [(r.key, r.value) for r in records] == [("alice@example.com", b'{"hello": 1}')]

        # MLflow answers its REST API and keeps its store under DATA_DIR
        search = httpx.post(
            f"http://127.0.0.1:{mlflow_port}/api/2.0/mlflow/experiments/search",
            json={"max_results": 5},
            timeout=10,
        )
        assert search.status_code == 200, search.text
        assert (tmp_path / "data" / "mlflow" / "mlflow.db").is_file()

        again = _modstack(env, tmp_path, "up", "--only", "kafka,mlflow")
        assert again.returncode == 0, again.stdout + again.stderr
        assert "[ok] kafka: already running" in again.stdout

        started = time.monotonic()
        down = _modstack(env, tmp_path, "down")
        print(f"[stack] down in {time.monotonic() - started:.1f} s")
        assert down.returncode == 0, down.stdout + down.stderr
        assert "stack stopped" in down.stdout
    finally:
        _modstack(env, tmp_path, "down")  # whatever happened above, leave nothing behind

    assert not port_open("127.0.0.1", kafka_port)
    assert not port_open("127.0.0.1", mlflow_port)
    assert not pid_alive(supervisord_pid)
    assert (tmp_path / "run" / "logs" / "kafka.log").read_text().strip()
    assert (tmp_path / "run" / "logs" / "mlflow.log").read_text().strip()

    idle = _modstack(env, tmp_path, "down")
    assert idle.returncode == 0
    assert "stack is not running" in idle.stdout


def test_a_program_that_exits_at_start_is_reported_with_its_log_tail(tmp_path: Path) -> None:
    paths = StackPaths(tmp_path / "run")
    paths.logs.mkdir(parents=True)
    crasher = Program(
        name="crasher",
        argv=(sys.executable, "-c", "print('cannot read config.yaml', flush=True); exit(3)"),
        stage="services",
        port=free_port(),
    )
    paths.conf.write_text(render_supervisord_conf([crasher], paths, {"PYTHONUNBUFFERED": "1"}))
    start_supervisord(paths)
    try:
        messages: list[str] = []
        result = start_and_wait(paths, [crasher], UpResult(), messages.append)
    finally:
        assert shutdown(paths, say=lambda _: None)
    assert list(result.failed) == ["crasher"]
    assert "exited while starting" in result.failed["crasher"]
    assert "cannot read config.yaml" in result.failed["crasher"]  # the tail of its log
    assert any(m.startswith("[FAIL] crasher") for m in messages)
