"""`modstack up --only kafka,mlflow` / `status` / `down` for real, on free ports in a tmp dir:
the broker (with its S3 server) and MLflow come up healthy, a round trip goes through the broker
with the shared helpers, the broker's records and a group's offsets survive `down` and `up`, and
`down` leaves nothing listening. The scale profile the same way: MLflow on PostgreSQL with its
artifacts in the S3 server, the Feast registry applied into PostgreSQL."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg2
import pytest
from mlflow import MlflowClient

from modstack.kafka import make_consumer, make_producer
from modstack.names import ALL_TOPICS, TOPIC_MESSAGES
from modstack.processes import child_env
from modstack.waits import free_port, port_open, wait_until
from stack.lifecycle import UpResult, shutdown, start_and_wait
from stack.programs import PG_USER, PROJECT_ROOT, Program, StackPaths
from stack.supervisor import pid_alive, render_supervisord_conf, start_supervisord

pytestmark = [pytest.mark.integration, pytest.mark.backends_chosen]

REPO_ROOT = PROJECT_ROOT


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


def _read_all(bootstrap: str, group: str) -> list[tuple[str, bytes]]:
    """What a consumer of `group` reads from messages.v1 (committing it), until 3 s of quiet."""
    consumer = make_consumer([TOPIC_MESSAGES], group, bootstrap)
    records: list = []
    try:
        deadline = time.monotonic() + 30
        quiet_since = time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - quiet_since < 3:
            batch = [r for rs in consumer.poll(timeout_ms=500).values() for r in rs]
            if batch or not consumer.assignment():  # quiet counts once the group is joined
                records += batch
                quiet_since = time.monotonic()
        consumer.commit()
    finally:
        consumer.close()
    return [(r.key, r.value) for r in records]


def test_up_only_kafka_and_mlflow_then_down_leaves_nothing_running(tmp_path: Path) -> None:
    kafka_port, mlflow_port, s3_port = free_port(), free_port(), free_port()
    env = child_env(
        {
            "RUN_DIR": str(tmp_path / "run"),
            "DATA_DIR": str(tmp_path / "data"),
            "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{kafka_port}",
            "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{mlflow_port}",
            "S3_ADDR": f"http://127.0.0.1:{s3_port}",
        }
    )
    bootstrap = f"127.0.0.1:{kafka_port}"
    pidfile = tmp_path / "run" / "supervisord.pid"
    try:
        started = time.monotonic()
        up = _modstack(env, tmp_path, "up", "--only", "kafka,mlflow")
        print(f"\n[stack] up (kafka, mlflow) in {time.monotonic() - started:.1f} s")
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"[ok] s3: healthy on 127.0.0.1:{s3_port}" in up.stdout  # the broker needs it
        assert f"[ok] kafka: healthy on 127.0.0.1:{kafka_port}" in up.stdout
        assert f"[ok] mlflow: healthy on 127.0.0.1:{mlflow_port}" in up.stdout
        supervisord_pid = int(pidfile.read_text())

        status = _modstack(env, tmp_path, "status")
        assert status.returncode == 0, status.stdout + status.stderr
        rows = {line.split()[1]: line for line in status.stdout.splitlines() if "│" in line}
        assert "RUNNING" in rows["kafka"] and "ok" in rows["kafka"]
        assert "RUNNING" in rows["s3"] and "ok" in rows["s3"]
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

        # the broker keeps its records and a group's committed offsets in the S3 server, under
        # DATA_DIR: they survive a `down` and an `up`
        assert _read_all(bootstrap, "kept") == [("alice@example.com", b'{"hello": 1}')]
        started = time.monotonic()
        down = _modstack(env, tmp_path, "down")
        print(f"[stack] down in {time.monotonic() - started:.1f} s")
        assert down.returncode == 0, down.stdout + down.stderr
        assert "stack stopped" in down.stdout
        assert any((tmp_path / "data" / "s3").rglob("*.batch*"))
        back = _modstack(env, tmp_path, "up", "--only", "kafka")
        assert back.returncode == 0, back.stdout + back.stderr
        assert "topics already there" in back.stdout
        assert _read_all(bootstrap, "kept") == []  # read on from its committed offset
        assert _read_all(bootstrap, "new") == [("alice@example.com", b'{"hello": 1}')]
        down = _modstack(env, tmp_path, "down")
        assert down.returncode == 0, down.stdout + down.stderr
    finally:
        _modstack(env, tmp_path, "down")  # whatever happened above, leave nothing behind

    assert not port_open("127.0.0.1", kafka_port)
    assert not port_open("127.0.0.1", mlflow_port)
    assert not port_open("127.0.0.1", s3_port)
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


@pytest.fixture
def reachable_tmp() -> Iterator[Path]:
    """A folder PostgreSQL's user can reach (pytest's tmp dirs are private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="modstack-scale-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_up_scale_profile_runs_mlflow_on_postgres_with_artifacts_in_the_s3_server(
    reachable_tmp: Path,
) -> None:
    ports = {name: free_port() for name in ("s3", "postgres", "redis", "kafka", "mlflow")}
    env = child_env(
        {
            "RUN_DIR": str(reachable_tmp / "run"),
            "DATA_DIR": str(reachable_tmp / "data"),
            "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{ports['kafka']}",
            "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{ports['mlflow']}",
            "S3_ADDR": f"http://127.0.0.1:{ports['s3']}",
            "POSTGRES_ADDR": f"127.0.0.1:{ports['postgres']}",
            "REDIS_ADDR": f"127.0.0.1:{ports['redis']}",
            "FEAST_REPO_PATH": str(REPO_ROOT / "features"),
        }
    )
    try:
        started = time.monotonic()
        only = "mlflow,feast-apply"
        up = _modstack(env, reachable_tmp, "up", "--profile", "scale", "--only", only)
        seconds = time.monotonic() - started
        print(f"\n[stack] up --profile scale --only {only} in {seconds:.1f} s")
        assert up.returncode == 0, up.stdout + up.stderr
        for name in ("s3", "postgres", "redis", "mlflow"):  # what the two need comes along
            assert f"[ok] {name}: healthy on 127.0.0.1:{ports[name]}" in up.stdout, up.stdout
        assert "databases created: mlflow, feast, review, message_log" in up.stdout
        assert "[ok] feast-apply: done" in up.stdout

        # a run's artifact goes through the tracking server into the S3 server's bucket, its
        # metadata into PostgreSQL
        client = MlflowClient(f"http://127.0.0.1:{ports['mlflow']}")
        run = client.create_run(client.create_experiment("scale-profile"))
        artifact = reachable_tmp / "note.txt"
        artifact.write_text("kept in the S3 server")
        client.log_artifact(run.info.run_id, str(artifact))
        stored = list((reachable_tmp / "data" / "s3" / "mlflow").rglob("note.txt*_object"))
        assert len(stored) == 1 and stored[0].read_text() == "kept in the S3 server"
        pg = f"host=127.0.0.1 port={ports['postgres']} user={PG_USER}"
        with psycopg2.connect(f"{pg} dbname=mlflow") as connection, connection.cursor() as cur:
            cur.execute("SELECT count(*) FROM runs WHERE run_uuid = %s", (run.info.run_id,))
            assert cur.fetchone() == (1,)
        # the Feast registry went to PostgreSQL, by the profile's environment alone
        with psycopg2.connect(f"{pg} dbname=feast") as connection, connection.cursor() as cur:
            cur.execute("SELECT count(*) FROM feature_views")
            assert cur.fetchone()[0] >= 2

        shown = _modstack(env, reachable_tmp, "env")
        assert "export STACK_PROFILE=scale" in shown.stdout
        assert "export FEAST_REGISTRY_TYPE=sql" in shown.stdout
        local = _modstack(env, reachable_tmp, "up", "--profile", "local", "--only", "kafka")
        assert local.returncode == 1 and "runs the scale profile" in local.stderr
    finally:
        down = _modstack(env, reachable_tmp, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert not any(port_open("127.0.0.1", port) for port in ports.values())
