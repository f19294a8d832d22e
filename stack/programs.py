"""The programs of the local stack: what runs, on which port, how `up` knows it is healthy.

Pure configuration from settings (nothing starts here): the process list in start order, the
paths under RUN_DIR, the environment every program gets, and the Prometheus config rendered
for the ports in use. Files under RUN_DIR (var/run): supervisord.conf, supervisord.pid,
supervisor.sock, prometheus.yml, logs/<process>.log, logs/supervisord.log.
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

from modstack.processes import (
    MLFLOW_SERVER_ENV,
    QUIET_ENV,
    TANSU_STOP_SIGNAL,
    MissingBinary,
    http_ok,
    kafka_ready,
    mlflow_argv,
    tansu_argv,
)
from modstack.settings import CommonSettings, port_of
from modstack.waits import port_open

PROJECT_ROOT = Path(__file__).resolve().parents[1]
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}

Stage = Literal["infra", "setup", "services"]
STAGES: tuple[Stage, ...] = ("infra", "setup", "services")


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
    after_start: Callable[[], str] | None = field(default=None, compare=False)

    def health(self, for_status: bool = False) -> bool:
        """True when the program answers its readiness (or, for status, its status) probe."""
        url = (self.status_url or self.ready_url) if for_status else self.ready_url
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

    def log_of(self, name: str) -> Path:
        return self.logs / f"{name}.log"


def stack_paths(settings: CommonSettings) -> StackPaths:
    """Absolute paths under RUN_DIR (relative settings are relative to the current folder)."""
    return StackPaths(settings.run_dir.resolve())


def _python_module(name: str, module: str, stage: Stage, port: int | None, **kw: Any) -> Program:
    return Program(name=name, argv=(sys.executable, "-m", module), stage=stage, port=port, **kw)


def _is_loopback(host: str | None) -> bool:
    return (host or "127.0.0.1") in LOOPBACK_HOSTS


def stack_programs(settings: CommonSettings) -> list[Program]:
    """Every process of the local stack, in start order, with ports from settings."""
    from modstack.kafka import ensure_topics

    data_dir = settings.data_dir.resolve()
    programs: list[Program] = []

    host, kafka_port = settings.kafka_address
    bootstrap = f"{host}:{kafka_port}"
    if _is_loopback(host):
        try:
            kafka_argv: tuple[str, ...] = tuple(tansu_argv(kafka_port))
            missing = None
        except MissingBinary as exc:
            kafka_argv, missing = ("tansu",), str(exc)
        programs.append(
            Program(
                name="kafka",
                argv=kafka_argv,
                stage="infra",
                port=kafka_port,
                ready_kafka=bootstrap,
                stop_signal=TANSU_STOP_SIGNAL.name.removeprefix("SIG"),
                start_timeout_s=20,
                missing=missing,
                after_start=lambda: _create_topics(ensure_topics, bootstrap),
            )
        )

    mlflow = urlparse(settings.mlflow_tracking_uri)
    if mlflow.scheme in ("http", "https") and _is_loopback(mlflow.hostname):
        mlflow_port = mlflow.port or 5000
        programs.append(
            Program(
                name="mlflow",
                argv=tuple(mlflow_argv(mlflow_port, data_dir / "mlflow")),
                stage="infra",
                port=mlflow_port,
                ready_url=f"http://127.0.0.1:{mlflow_port}/health",
                extra_env=tuple(MLFLOW_SERVER_ENV.items()),
                start_timeout_s=120,  # ~12 s alone; longer while the other services import
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


def program_environment(settings: CommonSettings) -> dict[str, str]:
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
    return env


def select_programs(programs: Sequence[Program], only: Sequence[str] | None) -> list[Program]:
    """The programs named in `only` (all when None), in stack order; unknown names are an
    error that lists the known ones."""
    if not only:
        return list(programs)
    known = {p.name for p in programs}
    unknown = [n for n in only if n not in known]
    if unknown:
        raise StackError(
            f"unknown process {', '.join(unknown)}; the stack has: {', '.join(sorted(known))}"
        )
    return [p for p in programs if p.name in only]
