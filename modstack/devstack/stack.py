"""The local stack: every ModStack process on this machine, run by supervisord.

supervisord (a well-kept process manager) owns the processes so they outlive `modstack up`,
each logs to its own file, and `down` stops exactly the processes it started (a shutdown of
that supervisord, found by the unix socket and pidfile under RUN_DIR). This module adds what
supervisord does not know: the process list from settings, checks before starting (port
free? binary installed? module written?), start order, health checks with a bound, and
clear errors with the tail of the log of whatever failed.

Files under RUN_DIR (var/run): supervisord.conf, supervisord.pid, supervisor.sock,
logs/<process>.log, logs/supervisord.log.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import socket
import sys
import time
import xmlrpc.client
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from modstack.devstack.processes import (
    MLFLOW_SERVER_ENV,
    QUIET_ENV,
    TANSU_STOP_SIGNAL,
    MissingBinary,
    http_ok,
    kafka_ready,
    log_tail,
    mlflow_argv,
    tansu_argv,
)
from modstack.settings import CommonSettings, port_of
from modstack.waits import port_open

PROJECT_ROOT = Path(__file__).resolve().parents[2]
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
    module: str | None = None  # `python -m MODULE`: must exist in the checkout
    needs_module: str | None = None  # a module the command imports: must exist too
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
    return Program(
        name=name,
        argv=(sys.executable, "-m", module),
        stage=stage,
        port=port,
        module=module,
        **kw,
    )


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
            argv=(sys.executable, "-m", "modstack", "feast-apply"),
            stage="setup",
            module="modstack",
            needs_module="features.store",
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
        # The stack's own Prometheus when it runs one: the canary controller then reads PromQL.
        "PROMETHEUS_URL": settings.prometheus_url
        or (f"http://127.0.0.1:{LOCAL_PROMETHEUS_PORT}" if shutil.which("prometheus") else ""),
        "PROCESSOR_METRICS_PORT": str(_processor_metrics_port()),
        "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
    }
    env.update(QUIET_ENV)
    return env


def _ini_value(value: str) -> str:
    # supervisord expands %(name)s in values: a literal % must be doubled
    return value.replace("%", "%%")


def _env_line(env: dict[str, str]) -> str:
    for key, value in env.items():
        if '"' in value or "\n" in value:
            raise StackError(f"{key} contains a quote or newline; supervisord cannot pass it")
    return ",".join(f'{k}="{_ini_value(v)}"' for k, v in env.items())


def render_supervisord_conf(
    programs: Sequence[Program], paths: StackPaths, env: dict[str, str]
) -> str:
    """The supervisord.conf for these programs: nothing autostarts (`up` starts them in
    order), each logs to logs/<name>.log, and a stop reaches the whole process group."""
    if "%" in str(paths.run_dir):
        # supervisord expands log file names a second time: no escape survives both passes
        raise StackError(f"RUN_DIR {paths.run_dir} contains '%'; choose a folder without it")
    if len(str(paths.socket)) > 100:
        raise StackError(
            f"RUN_DIR {paths.run_dir} is too long for a unix socket path (max ~100 characters)"
        )
    sections = [
        "; generated by `modstack up`; edits are overwritten",
        "[unix_http_server]",
        f"file={_ini_value(str(paths.socket))}",
        "chmod=0700",
        "",
        "[supervisord]",
        f"logfile={_ini_value(str(paths.logs / 'supervisord.log'))}",
        "logfile_maxbytes=5MB",
        "logfile_backups=1",
        f"pidfile={_ini_value(str(paths.pidfile))}",
        f"directory={_ini_value(str(PROJECT_ROOT))}",
        "nodaemon=false",
        "identifier=modstack",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{_ini_value(str(paths.socket))}",
        "",
    ]
    for program in programs:
        env_line = _env_line({**env, **dict(program.extra_env)})
        sections += [
            f"[program:{program.name}]",
            f"command={_ini_value(shlex.join(program.argv))}",
            f"directory={_ini_value(str(PROJECT_ROOT))}",
            f"environment={env_line}",
            "autostart=false",
            # supervisord stops in reverse priority: services first, the broker and MLflow last
            f"priority={(STAGES.index(program.stage) + 1) * 100}",
            # a oneshot runs once; a service that dies later is restarted by supervisord
            f"autorestart={'false' if program.oneshot else 'unexpected'}",
            f"startsecs={0 if program.oneshot else 1}",
            f"startretries={0 if program.oneshot else 2}",
            "exitcodes=0",
            f"stopsignal={program.stop_signal}",
            "stopwaitsecs=10",
            "stopasgroup=true",  # mlflow and uvicorn have child processes
            "killasgroup=true",
            "redirect_stderr=true",
            f"stdout_logfile={_ini_value(str(paths.log_of(program.name)))}",
            "stdout_logfile_maxbytes=20MB",
            "stdout_logfile_backups=2",
            "",
        ]
    return "\n".join(sections)


# --- checks before starting ---------------------------------------------------------------


def port_holder(port: int) -> str | None:
    """Who listens on a local TCP port: "pid 123 (tansu broker ...)", "an unknown process"
    when it cannot be told, or None when the port is free."""
    if not _port_in_use(port):
        return None
    import psutil

    try:
        connections = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:
        return "another process (run as root or `ss -ltnp` to see which)"
    for conn in connections:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            if conn.pid is None:
                return "another user's process"
            try:
                cmdline = " ".join(psutil.Process(conn.pid).cmdline())
            except psutil.Error:
                cmdline = "?"
            return f"pid {conn.pid} ({_shorten(cmdline)})"
    return "an unknown process"


def _port_in_use(port: int) -> bool:
    # bind is the real question ("can our server listen here?"); a connect would miss a
    # socket bound but not yet listening and would hang on a firewalled port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # as the servers themselves bind (uvicorn, Tansu): connections of a stopped stack that
        # linger in TIME_WAIT do not stop a new listener, so they must not count as "taken"
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _shorten(text: str, limit: int = 90) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def module_exists(module: str, runnable: bool = False) -> bool:
    """True when MODULE has code in this checkout; `runnable`: `python -m MODULE` has
    something to run (a module file or a package `__main__`). Checked on disk: importing a
    service package just to see that it exists would cost seconds."""
    base = PROJECT_ROOT / Path(*module.split("."))
    package_file = base / ("__main__.py" if runnable else "__init__.py")
    return base.with_suffix(".py").is_file() or package_file.is_file()


def preflight(programs: Iterable[Program]) -> list[str]:
    """Problems that stop these programs from starting: missing binary or module, port taken.
    Empty when all can start."""
    problems = []
    for program in programs:
        if program.missing:
            problems.append(f"{program.name}: {program.missing}")
        if program.module and not module_exists(program.module, runnable=True):
            problems.append(
                f"{program.name}: module {program.module} is not in this checkout yet "
                f"(`python {' '.join(program.argv[1:])}` has nothing to run)"
            )
        if program.needs_module and not module_exists(program.needs_module):
            problems.append(
                f"{program.name}: module {program.needs_module} is not in this checkout yet"
            )
        if program.port:
            holder = port_holder(program.port)
            if holder:
                problems.append(
                    f"{program.name}: port {program.port} is already taken by {holder}; stop "
                    "it or set another port (see `.env.example`)"
                )
    return problems


# --- supervisord --------------------------------------------------------------------------


def rpc(paths: StackPaths) -> Any:
    """XML-RPC proxy of the stack's supervisord (the same interface supervisorctl uses)."""
    from supervisor.xmlrpc import SupervisorTransport

    transport = SupervisorTransport(None, None, serverurl=f"unix://{paths.socket}")
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)


def supervisord_running(paths: StackPaths) -> bool:
    """True when the stack's supervisord answers on its socket."""
    if not paths.socket.exists():
        return False
    try:
        return rpc(paths).supervisor.getState()["statename"] == "RUNNING"
    except (OSError, xmlrpc.client.Error):
        return False


def _supervisor_bin(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        raise StackError(
            f"`{name}` not found: it comes with the Python package supervisor (`make setup`)"
        )
    return found


def start_supervisord(paths: StackPaths) -> None:
    """Start (daemonized) the supervisord of paths.conf and wait until it answers."""
    from modstack.waits import wait_until

    paths.pidfile.unlink(missing_ok=True)
    log = paths.logs / "supervisord.log"
    proc = _run([_supervisor_bin("supervisord"), "-c", str(paths.conf)])
    if proc.returncode != 0:
        raise StackError(f"supervisord did not start: {proc.stdout}\n{log_tail(log)}")
    wait_until(
        lambda: supervisord_running(paths),
        10,
        f"supervisord (socket {paths.socket})",
        detail=lambda: log_tail(log),
    )


def _run(argv: list[str]) -> Any:
    import subprocess

    return subprocess.run(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=30,
        cwd=PROJECT_ROOT,
    )


def _sync_config(paths: StackPaths) -> None:
    """Make a running supervisord pick up a rewritten config (what `supervisorctl update`
    does); a changed program that is running keeps its old definition until `down`."""
    server = rpc(paths)
    [[added, changed, removed]] = server.supervisor.reloadConfig()
    running = {
        p["name"] for p in server.supervisor.getAllProcessInfo() if p["statename"] == "RUNNING"
    }
    for name in removed + changed:
        if name not in running:
            server.supervisor.removeProcessGroup(name)
    for name in added + [c for c in changed if c not in running]:
        server.supervisor.addProcessGroup(name)


# --- up / down / status / logs ------------------------------------------------------------

Say = Callable[[str], None]


@dataclass
class UpResult:
    """What `up` did: seconds to healthy per program, what it skipped and what failed."""

    started: dict[str, float] = field(default_factory=dict)
    already_running: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


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


def up(
    settings: CommonSettings,
    only: Sequence[str] | None = None,
    say: Say = print,
) -> UpResult:
    """Start the stack (or the `only` subset) under supervisord and wait until each program
    is healthy, stage by stage. Raises StackError when a check fails before anything starts;
    a program that fails while starting is in `UpResult.failed` (with its log tail)."""
    paths = stack_paths(settings)
    every = stack_programs(settings)
    selected = select_programs(every, only)
    result = UpResult()

    # An optional program with nothing to run is left out, loudly; asked for by name, it is
    # an error like any other.
    for program in list(selected):
        if program.optional and program.missing and not only:
            say(f"[skip] {program.name}: {program.missing}")
            result.skipped.append(program.name)
            selected.remove(program)

    running_now = _running_programs(paths)
    to_start = [p for p in selected if p.name not in running_now]
    result.already_running = [p.name for p in selected if p.name in running_now]
    for name in result.already_running:
        say(f"[ok] {name}: already running")

    problems = preflight(to_start)
    if problems:
        raise StackError("cannot start the stack:\n  " + "\n  ".join(problems))
    if not to_start:
        return result

    paths.logs.mkdir(parents=True, exist_ok=True)
    settings.data_dir.resolve().joinpath("mlflow", "artifacts").mkdir(parents=True, exist_ok=True)
    paths.conf.write_text(render_supervisord_conf(every, paths, program_environment(settings)))
    paths.prometheus_conf.write_text(render_prometheus_config(every))
    if supervisord_running(paths):
        _sync_config(paths)
    else:
        start_supervisord(paths)

    for stage in STAGES:
        batch = [p for p in to_start if p.stage == stage]
        if not batch:
            continue
        start_and_wait(paths, batch, result, say)
        if result.failed:
            break  # later stages need this one
    return result


def _running_programs(paths: StackPaths) -> set[str]:
    if not supervisord_running(paths):
        return set()
    infos = rpc(paths).supervisor.getAllProcessInfo()
    return {i["name"] for i in infos if i["statename"] in ("RUNNING", "STARTING")}


def start_and_wait(paths: StackPaths, batch: list[Program], result: UpResult, say: Say) -> UpResult:
    """Start a stage's programs together, then wait for each to be healthy (bounded);
    records each in `result` (returned) as started or failed."""
    server = rpc(paths)
    started_at = time.monotonic()
    log_start: dict[str, int] = {}
    for program in batch:
        # a failure shows the log of this start only; earlier runs stay in the file
        log = paths.log_of(program.name)
        log_start[program.name] = log.stat().st_size if log.exists() else 0
        server.supervisor.startProcess(program.name, False)
        say(f"[..] {program.name}: starting")
    pending = {p.name: p for p in batch}
    first_pid: dict[str, int] = {}
    while pending:
        for name, program in list(pending.items()):
            info = server.supervisor.getProcessInfo(name)
            elapsed = time.monotonic() - started_at
            outcome, detail = _check_start(program, info, first_pid)
            if outcome == "waiting" and elapsed > program.start_timeout_s:
                outcome, detail = "failed", f"not healthy after {program.start_timeout_s:g} s"
            if outcome == "up":
                result.started[name] = elapsed
                where = f" on 127.0.0.1:{program.port}" if program.port else ""
                what = "done" if program.oneshot else f"healthy{where}"
                say(f"[ok] {name}: {what} in {elapsed:.1f} s" + (f" ({detail})" if detail else ""))
                del pending[name]
            elif outcome == "failed":
                with contextlib.suppress(xmlrpc.client.Fault):
                    server.supervisor.stopProcess(name)
                tail = log_tail(paths.log_of(name), since=log_start[name])
                result.failed[name] = f"{detail}\n{tail}".strip()
                say(f"[FAIL] {name}: {detail}\n{tail}")
                del pending[name]
        if pending:
            time.sleep(0.2)
    return result


def _check_start(
    program: Program, info: dict[str, Any], first_pid: dict[str, int]
) -> tuple[Literal["up", "failed", "waiting"], str]:
    """Where a starting program stands, from its supervisord state and its health probe;
    the text is the failure reason, or a note for a program that is up."""
    failure = _startup_failure(program, info, first_pid)
    if failure is not None:
        return "failed", failure
    if program.oneshot:
        return ("up", "") if info["statename"] == "EXITED" else ("waiting", "")
    if info["statename"] != "RUNNING" or not _healthy(program):
        return "waiting", ""
    try:
        return "up", program.after_start() if program.after_start else ""
    except Exception as exc:  # e.g. topic creation refused: report it, do not crash `up`
        return "failed", f"healthy, but its set-up step failed: {exc}"


def _healthy(program: Program) -> bool:
    try:
        return program.health()
    except Exception:  # a probe of a starting server may fail in many ways: "not yet"
        return False


def _startup_failure(
    program: Program, info: dict[str, Any], first_pid: dict[str, int]
) -> str | None:
    state = info["statename"]
    if program.oneshot:
        if state == "EXITED" and info["exitstatus"] != 0:
            return f"exited with code {info['exitstatus']}"
        if state in ("FATAL", "BACKOFF"):
            return f"could not run ({info.get('spawnerr') or state})"
        return None
    if state in ("EXITED", "FATAL", "BACKOFF"):
        detail = info.get("spawnerr") or f"exit code {info['exitstatus']}"
        return f"exited while starting ({detail})"
    pid = info.get("pid") or 0
    if pid and first_pid.setdefault(program.name, pid) != pid:
        return "exited while starting and was restarted by supervisord"
    return None


def down(settings: CommonSettings, say: Say = print, timeout_s: float = 30.0) -> bool:
    """Stop everything the stack's supervisord runs, then supervisord itself. Idempotent:
    returns False (and says so) when nothing was running."""
    return shutdown(stack_paths(settings), say, timeout_s)


def shutdown(paths: StackPaths, say: Say = print, timeout_s: float = 30.0) -> bool:
    """`down` for the supervisord of these paths."""
    if supervisord_running(paths):
        server = rpc(paths)
        pid: int | None = int(server.supervisor.getPID())
        names = [i["name"] for i in server.supervisor.getAllProcessInfo() if i["pid"]]
        say(f"stopping {', '.join(names) or 'supervisord'} ...")
        server.supervisor.shutdown()  # what `supervisorctl shutdown` sends: stop all, then exit
    else:
        pid = _pidfile_supervisord(paths)
        if pid is None:
            stale = paths.pidfile.exists()
            paths.pidfile.unlink(missing_ok=True)
            say("stack is not running" + (" (removed a stale pidfile)" if stale else ""))
            return False
        # alive but not answering on its socket: SIGTERM makes supervisord stop its children
        say(f"supervisord (pid {pid}) does not answer on {paths.socket}; sending SIGTERM")
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while pid is not None and pid_alive(pid):
        if time.monotonic() > deadline:
            raise StackError(
                f"supervisord (pid {pid}) still runs {timeout_s:g} s after shutdown; "
                f"see {paths.logs / 'supervisord.log'}"
            )
        time.sleep(0.1)
    say("stack stopped")
    return True


def _pidfile_supervisord(paths: StackPaths) -> int | None:
    """The pid in the pidfile when that process is alive and is a supervisord."""
    try:
        pid = int(paths.pidfile.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if b"supervisord" in cmdline and pid_alive(pid) else None


def pid_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie waiting to be reaped."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (exited, not yet reaped by its parent) counts as gone
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return True


@dataclass(frozen=True)
class ProgramStatus:
    """One row of `modstack status`."""

    name: str
    state: str
    pid: int | None
    port: int | None
    health: str
    log: Path
    failed: bool  # crashed, gave up, or (a oneshot) exited with an error


def status(settings: CommonSettings) -> list[ProgramStatus] | None:
    """Per program: supervisord state, pid, port, health probe, log path; None when the
    stack is not running."""
    paths = stack_paths(settings)
    if not supervisord_running(paths):
        return None
    programs = {p.name: p for p in stack_programs(settings)}
    rows = []
    for info in rpc(paths).supervisor.getAllProcessInfo():
        program = programs.get(info["name"])
        state = info["statename"]
        oneshot = program is not None and program.oneshot
        exited_badly = state == "EXITED" and (info["exitstatus"] != 0 or not oneshot)
        if program is None:
            health = "-"
        elif oneshot:
            health = "ok" if state == "EXITED" and info["exitstatus"] == 0 else "-"
        elif state == "RUNNING":
            try:
                health = "ok" if program.health(for_status=True) else "not ready"
            except Exception as exc:
                health = f"error: {type(exc).__name__}"
        else:
            health = "-"
        rows.append(
            ProgramStatus(
                name=info["name"],
                state=state,
                pid=info["pid"] or None,
                port=program.port if program else None,
                health=health,
                log=Path(info["stdout_logfile"]),
                failed=state in ("FATAL", "BACKOFF") or exited_badly,
            )
        )
    order = list(programs)
    rows.sort(key=lambda r: order.index(r.name) if r.name in order else len(order))
    return rows


def log_path(settings: CommonSettings, name: str) -> Path:
    """The log file of a stack program (`supervisord` for the manager's own log)."""
    paths = stack_paths(settings)
    if name == "supervisord":
        return paths.logs / "supervisord.log"
    known = [p.name for p in stack_programs(settings)]
    if name not in known:
        raise StackError(f"unknown process {name!r}; the stack has: {', '.join(known)}")
    return paths.log_of(name)
