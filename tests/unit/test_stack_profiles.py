"""The local stack's two profiles as configuration, without starting anything: the durable
broker and its S3 server by default, and the scale profile's servers, commands and environment."""

from __future__ import annotations

from pathlib import Path

from modstack.settings import CommonSettings
from stack.programs import (
    PG_USER,
    Program,
    StackPaths,
    StackSettings,
    program_environment,
    select_programs,
    stack_programs,
)
from stack.supervisor import render_supervisord_conf

S3 = "http://127.0.0.1:19400"


def _settings(tmp_path: Path) -> CommonSettings:
    return CommonSettings(
        run_dir=tmp_path / "run",
        data_dir=tmp_path / "data",
        kafka_bootstrap_servers="127.0.0.1:19401",
        mlflow_tracking_uri="http://127.0.0.1:19402",
    )


def _stack(**values: str) -> StackSettings:
    return StackSettings(
        s3_addr=S3, postgres_addr="127.0.0.1:19403", redis_addr="127.0.0.1:19404", **values
    )


def _by_name(programs: list[Program]) -> dict[str, Program]:
    return {p.name: p for p in programs}


def test_the_local_broker_keeps_its_data_in_the_s3_server_that_starts_first(
    tmp_path: Path,
) -> None:
    programs = stack_programs(_settings(tmp_path), _stack())
    assert [p.name for p in programs if p.stage == "storage"] == ["s3"]
    kafka = _by_name(programs)["kafka"]
    assert kafka.argv[-2:] == ("--storage-engine", "s3://tansu/")
    assert dict(kafka.extra_env)["AWS_ENDPOINT"] == S3
    assert kafka.needs == ("s3",)
    s3 = _by_name(programs)["s3"]
    assert str(tmp_path / "data" / "s3") in s3.argv and "19400" in s3.argv
    assert "postgres" not in _by_name(programs) and "redis" not in _by_name(programs)
    assert "FEAST_REGISTRY_TYPE" not in program_environment(_settings(tmp_path), _stack())


def test_a_memory_broker_needs_no_s3_server(tmp_path: Path) -> None:
    programs = _by_name(stack_programs(_settings(tmp_path), _stack(broker_storage="memory")))
    assert "s3" not in programs
    assert programs["kafka"].argv[-1] == "memory://tansu/" and not programs["kafka"].needs


def test_only_kafka_brings_the_s3_server_and_only_mlflow_at_scale_its_servers(
    tmp_path: Path,
) -> None:
    local = stack_programs(_settings(tmp_path), _stack())
    assert [p.name for p in select_programs(local, ["kafka"])] == ["s3", "kafka"]
    scale = stack_programs(_settings(tmp_path), _stack(stack_profile="scale"))
    assert [p.name for p in select_programs(scale, ["mlflow"])] == ["s3", "postgres", "mlflow"]


def test_the_scale_profile_runs_mlflow_on_postgres_with_artifacts_in_the_s3_server(
    tmp_path: Path,
) -> None:
    programs = _by_name(stack_programs(_settings(tmp_path), _stack(stack_profile="scale")))
    assert [n for n, p in programs.items() if p.stage == "storage"] == ["s3", "postgres", "redis"]
    argv = list(programs["mlflow"].argv)
    backend = argv[argv.index("--backend-store-uri") + 1]
    assert backend == f"postgresql+psycopg2://{PG_USER}@127.0.0.1:19403/mlflow"
    assert argv[argv.index("--artifacts-destination") + 1] == "s3://mlflow/"
    assert dict(programs["mlflow"].extra_env)["MLFLOW_S3_ENDPOINT_URL"] == S3
    assert "--configure-bucket" not in programs["s3"].argv  # our server takes --bucket
    assert programs["s3"].argv.count("--bucket") == 2  # tansu and mlflow
    assert str(tmp_path / "data" / "postgres") in programs["postgres"].argv
    assert str(tmp_path / "data" / "redis") in programs["redis"].argv


def test_the_scale_profile_tells_every_service_where_its_stores_are(tmp_path: Path) -> None:
    env = program_environment(_settings(tmp_path), _stack(stack_profile="scale"))
    assert env["FEAST_REGISTRY_TYPE"] == "sql"
    assert env["FEAST_REGISTRY_PATH"] == f"postgresql+psycopg://{PG_USER}@127.0.0.1:19403/feast"
    assert env["FEAST_OFFLINE_STORE_TYPE"] == "postgres"
    assert (env["FEAST_OFFLINE_PG_HOST"], env["FEAST_OFFLINE_PG_PORT"]) == ("127.0.0.1", "19403")
    assert env["FEAST_ONLINE_STORE_TYPE"] == "redis"
    assert env["REDIS_CONNECTION_STRING"] == "127.0.0.1:19404"
    assert env["REVIEW_DATABASE_URL"].endswith("@127.0.0.1:19403/review")
    assert env["MESSAGE_LOG_DATABASE_URL"].endswith("@127.0.0.1:19403/message_log")
    assert env["DEADLETTER_DATABASE_URL"] == env["MESSAGE_LOG_DATABASE_URL"]


def test_postgres_runs_as_its_user_under_a_root_supervisord(tmp_path: Path) -> None:
    programs = stack_programs(_settings(tmp_path), _stack(stack_profile="scale"))
    postgres = _by_name(programs)["postgres"]
    conf = render_supervisord_conf(programs, StackPaths(tmp_path / "run"), {})
    section = conf.split("[program:postgres]")[1].split("[program:")[0]
    if postgres.user is None:  # not root: it runs as ourselves
        assert "user=" not in section
    else:
        assert f"user={postgres.user}" in section
    assert "stopsignal=INT" in section  # fast shutdown, not waiting for clients
