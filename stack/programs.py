"""The programs of the local stack: what runs, on which port, how `up` knows it is healthy.

Pure configuration from settings (nothing starts here): the process list in start order, the
paths under RUN_DIR, the environment every program gets, and the Prometheus config rendered
for the ports in use. Files under RUN_DIR (var/run): supervisord.conf, supervisord.pid,
supervisor.sock, profile, prometheus.yml, logs/<process>.log, logs/supervisord.log.

Two profiles. `local` (the default): Tansu keeping its topics, consumer groups and offsets in
a local S3 server on disk (s3rver, DATA_DIR/s3), MLflow on SQLite, Feast on files and SQLite.
`scale`: the same services against the servers a deployment on several machines uses, as local
processes: PostgreSQL (MLflow's backend, the Feast registry and offline store, the review
queue; DATA_DIR/postgres), Redis (the Feast online store; DATA_DIR/redis), the S3 server
(Tansu's storage and MLflow's artifacts).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic_settings import BaseSettings, SettingsConfigDict

from modstack.processes import (
    MEMORY_STORAGE,
    MLFLOW_BUCKET,
    MLFLOW_SERVER_ENV,
    QUIET_ENV,
    TANSU_BUCKET,
    TANSU_STOP_SIGNAL,
    MissingBinary,
    http_ok,
    kafka_ready,
    mlflow_argv,
    postgres_argv,
    postgres_user,
    redis_argv,
    s3_client_env,
    s3_storage,
    tansu_argv,
    tansu_s3_env,
)
from modstack.settings import CommonSettings, port_of
from modstack.waits import port_open
from stack.node_tools import s3_server_argv, s3_server_env

PROJECT_ROOT = Path(__file__).resolve().parents[1]
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}

# storage: the servers that keep state (S3, PostgreSQL, Redis); infra: the broker, MLflow,
# Prometheus on top of them; setup: one-shot steps; services: ModStack's own processes.
Stage = Literal["storage", "infra", "setup", "services"]
STAGES: tuple[Stage, ...] = ("storage", "infra", "setup", "services")
Profile = Literal["local", "scale"]
PROFILES: tuple[Profile, ...] = ("local", "scale")
# The scale profile's PostgreSQL: one superuser (trusted on loopback only) and a database each
# for MLflow, Feast (SQL registry and offline store), the review queue and the message log.
PG_USER = "modstack"
PG_DATABASES = ("mlflow", "feast", "review", "message_log")


class StackSettings(BaseSettings):
    """The local stack's own knobs (env vars; `modstack up --profile` overrides the profile)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    stack_profile: Profile = "local"
    # s3: Tansu keeps topics, consumer groups and offsets in the local S3 server and loses
    # nothing it acknowledged when it dies; memory: everything goes with the process
    broker_storage: Literal["s3", "memory"] = "s3"
    s3_addr: str = "http://127.0.0.1:4568"  # the local S3 server (s3rver's default port)
    postgres_addr: str = "127.0.0.1:5432"  # scale profile
    redis_addr: str = "127.0.0.1:6379"  # scale profile

    @property
    def s3_port(self) -> int:
        return port_of(self.s3_addr)

    @property
    def postgres_port(self) -> int:
        return int(self.postgres_addr.rpartition(":")[2])

    @property
    def redis_port(self) -> int:
        return int(self.redis_addr.rpartition(":")[2])

    def uses_s3(self) -> bool:
        """The stack runs the S3 server: for the broker, or for MLflow's artifacts (scale)."""
        return self.broker_storage == "s3" or self.stack_profile == "scale"

    def postgres_url(self, database: str, driver: str = "psycopg2") -> str:
        """SQLAlchemy URL of one of the scale profile's databases (trust auth on loopback)."""
        return f"postgresql+{driver}://{PG_USER}@{self.postgres_addr}/{database}"


class StackError(RuntimeError):
    """Something `up`/`down` cannot do; the message says what and what to do about it."""


@dataclass(frozen=True)
class Program:
    """One process of the stack, as supervisord runs it and as `up` checks it.

    `ready_url` / `ready_kafka` say how `up` knows it is serving; `status_url` (default:
    ready_url) is what `status` reports. A `oneshot` program is done when it exits with 0.
    """

    name: str
    argv: tuple[str, ...]
    stage: Stage
    port: int | None = None
    ready_url: str | None = None
    status_url: str | None = None
    ready_kafka: str | None = None
    extra_env: tuple[tuple[str, str], ...] = ()  # on top of the shared program environment
    oneshot: bool = False
    stop_signal: str = "TERM"
    start_timeout_s: float = 90.0
    optional: bool = False  # left out (with a note) when its binary is not installed
    missing: str | None = None  # why it cannot start (binary not installed ...), None if it can
    needs: tuple[str, ...] = ()  # programs it cannot work without (`--only` starts them too)
    user: str | None = None  # run as this user (supervisord must run as root)
    # before the start (e.g. initdb; returns a note), once healthy (e.g. create topics)
    before_start: Callable[[], str] | None = field(default=None, compare=False)
    after_start: Callable[[], str] | None = field(default=None, compare=False)
    ready_check: Callable[[], bool] | None = field(default=None, compare=False)

    def health(self, for_status: bool = False) -> bool:
        """True when the program answers its readiness (or, for status, its status) probe."""
        url = (self.status_url or self.ready_url) if for_status else self.ready_url
        if self.ready_check:
            return self.ready_check()
        if self.ready_kafka:
            return kafka_ready(self.ready_kafka)
        if url:
            return http_ok(url)
        if self.port:
            return port_open("127.0.0.1", self.port)
        return True


@dataclass(frozen=True)
class StackPaths:
    """Where the stack keeps its supervisor files and logs."""

    run_dir: Path

    @property
    def logs(self) -> Path:
        return self.run_dir / "logs"

    @property
    def conf(self) -> Path:
        return self.run_dir / "supervisord.conf"

    @property
    def pidfile(self) -> Path:
        return self.run_dir / "supervisord.pid"

    @property
    def socket(self) -> Path:
        return self.run_dir / "supervisor.sock"

    @property
    def prometheus_conf(self) -> Path:
        return self.run_dir / "prometheus.yml"

    @property
    def profile(self) -> Path:
        """The profile the running stack was started with (written by `up`)."""
        return self.run_dir / "profile"

    def log_of(self, name: str) -> Path:
        return self.logs / f"{name}.log"


def stack_paths(settings: CommonSettings) -> StackPaths:
    """Absolute paths under RUN_DIR (relative settings are relative to the current folder)."""
    return StackPaths(settings.run_dir.resolve())


def _python_module(name: str, module: str, stage: Stage, port: int | None, **kw: Any) -> Program:
    return Program(name=name, argv=(sys.executable, "-m", module), stage=stage, port=port, **kw)


def _is_loopback(host: str | None) -> bool:
    return (host or "127.0.0.1") in LOOPBACK_HOSTS


def _argv_or_missing(
    make: Callable[[], list[str]], name: str
) -> tuple[tuple[str, ...], str | None]:
    """The program's argv, or a placeholder and why it cannot start (not installed)."""
    try:
        return tuple(make()), None
    except MissingBinary as exc:
        return (name,), str(exc)


def storage_programs(settings: CommonSettings, stack: StackSettings) -> list[Program]:
    """The servers that keep state: the S3 server (unless the broker keeps memory only and the
    profile is local), and PostgreSQL and Redis in the scale profile."""
    data_dir = settings.data_dir.resolve()
    programs: list[Program] = []
    if stack.uses_s3():
        buckets = (
            (TANSU_BUCKET, MLFLOW_BUCKET) if stack.stack_profile == "scale" else (TANSU_BUCKET,)
        )
        argv, missing = _argv_or_missing(
            lambda: s3_server_argv(stack.s3_port, data_dir / "s3", buckets), "s3-server"
        )
        programs.append(
            Program(
                name="s3",
                argv=argv,
                stage="storage",
                port=stack.s3_port,
                ready_url=f"http://127.0.0.1:{stack.s3_port}/",
                extra_env=tuple(s3_server_env().items()),
                start_timeout_s=20,
                missing=missing,
                before_start=lambda: _make_dir(data_dir / "s3"),
            )
        )
    if stack.stack_profile != "scale":
        return programs
    pg_data = data_dir / "postgres"
    argv, missing = _argv_or_missing(
        lambda: postgres_argv(pg_data, stack.postgres_port), "postgres"
    )
    programs.append(
        Program(
            name="postgres",
            argv=argv,
            stage="storage",
            port=stack.postgres_port,
            stop_signal="INT",  # fast shutdown: SIGTERM waits for every client to disconnect
            start_timeout_s=30,
            missing=missing,
            user=postgres_user(),
            before_start=lambda: init_postgres(pg_data),
            ready_check=lambda: _postgres_answers(stack),
            after_start=lambda: create_databases(stack),
        )
    )
    argv, missing = _argv_or_missing(
        lambda: redis_argv(stack.redis_port, data_dir / "redis"), "redis-server"
    )
    programs.append(
        Program(
            name="redis",
            argv=argv,
            stage="storage",
            port=stack.redis_port,
            start_timeout_s=20,
            missing=missing,
            before_start=lambda: _make_dir(data_dir / "redis"),
            ready_check=lambda: _redis_answers(stack),
        )
    )
    return programs


def stack_programs(settings: CommonSettings, stack: StackSettings | None = None) -> list[Program]:
    """Every process of the local stack, in start order, with ports from settings."""
    from modstack.kafka import ensure_topics

    stack = stack or StackSettings()
    data_dir = settings.data_dir.resolve()
    programs = storage_programs(settings, stack)
    scale = stack.stack_profile == "scale"

    host, kafka_port = settings.kafka_address
    bootstrap = f"{host}:{kafka_port}"
    if _is_loopback(host):
        durable = stack.broker_storage == "s3"
        storage = s3_storage(TANSU_BUCKET) if durable else MEMORY_STORAGE
        argv, missing = _argv_or_missing(lambda: tansu_argv(kafka_port, storage=storage), "tansu")
        programs.append(
            Program(
                name="kafka",
                argv=argv,
                stage="infra",
                port=kafka_port,
                ready_kafka=bootstrap,
                extra_env=tuple(tansu_s3_env(stack.s3_addr).items()) if durable else (),
                stop_signal=TANSU_STOP_SIGNAL.name.removeprefix("SIG"),
                start_timeout_s=20,
                missing=missing,
                needs=("s3",) if durable else (),
                after_start=lambda: _create_topics(ensure_topics, bootstrap),
            )
        )

    mlflow = urlparse(settings.mlflow_tracking_uri)
    if mlflow.scheme in ("http", "https") and _is_loopback(mlflow.hostname):
        mlflow_port = mlflow.port or 5000
        mlflow_env = dict(MLFLOW_SERVER_ENV)
        missing = None
        if scale:
            mlflow_env.update(s3_client_env(stack.s3_addr))
            missing = _boto3_missing()
        programs.append(
            Program(
                name="mlflow",
                argv=tuple(
                    mlflow_argv(
                        mlflow_port,
                        data_dir / "mlflow",
                        backend_store_uri=stack.postgres_url("mlflow") if scale else None,
                        artifacts_destination=f"s3://{MLFLOW_BUCKET}/" if scale else None,
                    )
                ),
                stage="infra",
                port=mlflow_port,
                ready_url=f"http://127.0.0.1:{mlflow_port}/health",
                extra_env=tuple(mlflow_env.items()),
                start_timeout_s=120,  # ~12 s alone; longer while the other services import
                missing=missing,
                needs=("postgres", "s3") if scale else (),
            )
        )

    prometheus_bin = shutil.which("prometheus")
    prometheus_port = (
        port_of(settings.prometheus_url) if settings.prometheus_url else LOCAL_PROMETHEUS_PORT
    )
    programs.append(
        Program(
            name="prometheus",
            argv=(
                prometheus_bin or "prometheus",
                f"--config.file={stack_paths(settings).prometheus_conf}",
                f"--storage.tsdb.path={data_dir / 'prometheus'}",
                f"--web.listen-address=127.0.0.1:{prometheus_port}",
            ),
            stage="infra",
            port=prometheus_port,
            ready_url=f"http://127.0.0.1:{prometheus_port}/-/ready",
            start_timeout_s=20,
            optional=True,
            missing=None
            if prometheus_bin
            else "the `prometheus` binary is not installed: `sudo apt-get install prometheus` "
            "(or `make setup` as root)",
        )
    )

    programs.append(
        Program(
            name="feast-apply",
            argv=(sys.executable, "-m", "stack", "feast-apply"),
            stage="setup",
            oneshot=True,
            start_timeout_s=120,
            needs=("postgres", "redis") if scale else (),
        )
    )

    def http_service(name: str, addr: str) -> Program:
        port = port_of(addr)
        return _python_module(
            name,
            f"services.{name}",
            "services",
            port,
            # liveness for `up` (a service may be alive but not ready, e.g. serving before the
            # first model is trained); readiness for `status`
            ready_url=f"http://127.0.0.1:{port}/healthz",
            status_url=f"http://127.0.0.1:{port}/readyz",
        )

    processor_port = _processor_metrics_port()
    programs += [
        http_service("ingestion", settings.ingestion_addr),
        _python_module(
            "processor",
            "services.processor",
            "services",
            processor_port or None,
            ready_url=f"http://127.0.0.1:{processor_port}/metrics" if processor_port else None,
        ),
        http_service("serving", settings.serving_addr),
        http_service("monitoring", settings.monitoring_addr),
        http_service("canary", settings.canary_addr),
        http_service("review", settings.review_addr),
    ]
    return programs


def _processor_metrics_port() -> int:
    try:
        from services.processor.settings import ProcessorSettings
    except ImportError:
        return int(os.environ.get("PROCESSOR_METRICS_PORT", "8004"))
    return ProcessorSettings().processor_metrics_port


def _create_topics(ensure_topics: Callable[[str], list[str]], bootstrap: str) -> str:
    created = ensure_topics(bootstrap)
    return f"topics created: {', '.join(created)}" if created else "topics already there"


def _make_dir(folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    return ""


def _boto3_missing() -> str | None:
    try:
        import boto3  # noqa: F401  (MLflow's S3 artifact store imports it in the server)
    except ImportError:
        return "MLflow's S3 artifact store needs the Python package boto3: run `make setup`"
    return None


def init_postgres(data: Path) -> str:
    """`initdb` the scale profile's cluster into `data` unless it holds one; when we are root
    the cluster belongs to the user PostgreSQL runs as, who must be able to reach the folder."""
    import subprocess

    from modstack.processes import initdb_argv

    if (data / "PG_VERSION").exists():
        return ""
    user = postgres_user()
    data.mkdir(parents=True, exist_ok=True)
    argv = initdb_argv(data, PG_USER)
    if user is not None:
        import pwd

        entry = pwd.getpwnam(user)
        _check_reachable_by(data.parent, user)
        os.chown(data, entry.pw_uid, entry.pw_gid)
        argv = ["runuser", "-u", user, "--", *argv]
    data.chmod(0o700)
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    except subprocess.TimeoutExpired:
        raise StackError(f"initdb of {data} took over 120 s") from None
    if done.returncode != 0:
        raise StackError(f"initdb of {data} failed ({done.returncode}): {done.stdout}{done.stderr}")
    return f"initdb of {data}"


def _check_reachable_by(folder: Path, user: str) -> None:
    """PostgreSQL runs as `user`: every folder above its data must let others through."""
    for parent in [folder, *folder.parents]:
        if parent.stat().st_mode & 0o001 == 0 and parent.owner() != user:
            raise StackError(
                f"PostgreSQL runs as user {user!r} and cannot enter {parent} (mode "
                f"{oct(parent.stat().st_mode & 0o777)}): `chmod o+x {parent}`, or set DATA_DIR "
                "to a folder it can reach"
            )


def _postgres_answers(stack: StackSettings) -> bool:
    import psycopg2

    try:
        psycopg2.connect(
            host="127.0.0.1",
            port=stack.postgres_port,
            user=PG_USER,
            dbname="postgres",
            connect_timeout=1,
        ).close()
    except psycopg2.OperationalError:
        return False
    return True


def create_databases(stack: StackSettings, databases: Sequence[str] = PG_DATABASES) -> str:
    """Create the scale profile's databases that do not exist yet; says which it created."""
    import psycopg2

    connection = psycopg2.connect(
        host="127.0.0.1", port=stack.postgres_port, user=PG_USER, dbname="postgres"
    )
    try:
        connection.set_session(autocommit=True)  # CREATE DATABASE cannot run in a transaction
        with connection.cursor() as cursor:
            cursor.execute("SELECT datname FROM pg_database")
            existing = {row[0] for row in cursor.fetchall()}
            created = [name for name in databases if name not in existing]
            for name in created:
                cursor.execute(f'CREATE DATABASE "{name}"')
    finally:
        connection.close()
    return f"databases created: {', '.join(created)}" if created else "databases already there"


def _redis_answers(stack: StackSettings) -> bool:
    import redis

    try:
        return bool(redis.Redis(port=stack.redis_port, socket_timeout=1).ping())
    except redis.RedisError:
        return False


LOCAL_PROMETHEUS_PORT = 9090
PROMETHEUS_SOURCE_CONF = PROJECT_ROOT / "deploy" / "prometheus" / "prometheus.yml"


def render_prometheus_config(
    programs: Sequence[Program], source: Path = PROMETHEUS_SOURCE_CONF
) -> str:
    """deploy/prometheus/prometheus.yml with each job's target set to the port its program
    listens on here (job name = program name), and rule files made absolute (the copy lives
    under RUN_DIR). One source of truth for the scrape set-up, correct for any port choice."""
    import yaml

    config = yaml.safe_load(source.read_text())
    ports = {p.name: p.port for p in programs if p.port}
    for job in config.get("scrape_configs", []):
        if job.get("job_name") in ports:
            job["static_configs"] = [{"targets": [f"127.0.0.1:{ports[job['job_name']]}"]}]
    config["rule_files"] = [str(source.parent / rule) for rule in config.get("rule_files", [])]
    header = f"# generated by `modstack up` from {source}; edit that file instead\n"
    return header + yaml.safe_dump(config, sort_keys=False)


def profile_environment(
    stack: StackSettings, database_suffix: str = "", redis_db: int = 0
) -> dict[str, str]:
    """What the services (and clients on the host: training, replay) need to find the stores
    of the profile: nothing extra locally; in the scale profile Feast's SQL registry, offline
    store in PostgreSQL and Redis online store, the review queue, the message log and the dead
    letters in PostgreSQL. `database_suffix` and `redis_db` give a set of stores of its own on
    the same servers (the tests give one to each module)."""
    if stack.stack_profile != "scale":
        return {}
    host, port = stack.postgres_addr.rpartition(":")[::2]
    feast_db = "feast" + database_suffix
    return {
        "FEAST_REGISTRY_TYPE": "sql",
        "FEAST_REGISTRY_PATH": stack.postgres_url(feast_db, driver="psycopg"),
        "FEAST_OFFLINE_STORE_TYPE": "postgres",
        "FEAST_OFFLINE_PG_HOST": host,
        "FEAST_OFFLINE_PG_PORT": port,
        "FEAST_OFFLINE_PG_DATABASE": feast_db,
        "FEAST_OFFLINE_PG_USER": PG_USER,
        "FEAST_OFFLINE_PG_PASSWORD": "",  # trust auth on loopback
        "FEAST_ONLINE_STORE_TYPE": "redis",
        "REDIS_CONNECTION_STRING": stack.redis_addr + (f",db={redis_db}" if redis_db else ""),
        "REVIEW_DATABASE_URL": stack.postgres_url("review" + database_suffix),
        "MESSAGE_LOG_DATABASE_URL": stack.postgres_url("message_log" + database_suffix),
        # the dead letters: a table of their own in the message log's database
        "DEADLETTER_DATABASE_URL": stack.postgres_url("message_log" + database_suffix),
    }


def program_environment(
    settings: CommonSettings, stack: StackSettings | None = None
) -> dict[str, str]:
    """The settings every program gets, pinned in the supervisord config (absolute paths),
    so a process started later by the same supervisord sees the same stack. Secrets such as
    ADMIN_TOKEN are not written to the file: programs inherit them from `modstack up`'s env."""
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        "DATA_DIR": str(settings.data_dir.resolve()),
        "RUN_DIR": str(settings.run_dir.resolve()),
        "FEAST_REPO_PATH": str(settings.feast_repo_path.resolve()),
        "SERVING_ADDR": settings.serving_addr,
        "INGESTION_ADDR": settings.ingestion_addr,
        "MONITORING_ADDR": settings.monitoring_addr,
        "CANARY_ADDR": settings.canary_addr,
        "REVIEW_ADDR": settings.review_addr,
        # The stack's own Prometheus when it runs one: the canary controller then reads PromQL.
        "PROMETHEUS_URL": settings.prometheus_url
        or (f"http://127.0.0.1:{LOCAL_PROMETHEUS_PORT}" if shutil.which("prometheus") else ""),
        "PROCESSOR_METRICS_PORT": str(_processor_metrics_port()),
        "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
    }
    env.update(QUIET_ENV)
    env.update(profile_environment(stack or StackSettings()))
    return env


def select_programs(programs: Sequence[Program], only: Sequence[str] | None) -> list[Program]:
    """The programs named in `only` (all when None), in stack order; unknown names are an
    error that lists the known ones."""
    if not only:
        return list(programs)
    by_name = {p.name: p for p in programs}
    unknown = [n for n in only if n not in by_name]
    if unknown:
        raise StackError(
            f"unknown process {', '.join(unknown)}; the stack has: {', '.join(sorted(by_name))}"
        )
    # with what each needs (the broker its S3 server, MLflow its database ...)
    wanted: set[str] = set()
    todo = list(only)
    while todo:
        name = todo.pop()
        if name in by_name and name not in wanted:
            wanted.add(name)
            todo.extend(by_name[name].needs)
    return [p for p in programs if p.name in wanted]
