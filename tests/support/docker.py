"""A private Docker engine for the container tests, and the project image built on it.

    with running_dockerd(cache_dir, log_dir) as docker:
        ensure_base_image(docker, BASE_IMAGE, cache_dir)     # debootstrap, once per cache
        build_image(docker, REPO_ROOT, PROJECT_IMAGE, BASE_IMAGE, log)
        with running_container(docker, "serving", ...) as container: ...

`dockerd` (Debian `docker.io`) runs as a child of the test with a socket, pid file and exec
root of its own under /tmp, so it never touches a system Docker; its data root (the base
image, the dependency layer, BuildKit's uv cache) lives under var/cache/container and is
reused by the next run. A file lock keeps two test sessions off one data root.

No image registry is reachable where this runs, so the base image is Debian bookworm made with
`debootstrap --variant=minbase` and `docker import`, standing in for python:3.11-slim (bookworm's
python3 is 3.11). No bridge network either: dockerd runs with --bridge=none, builds use
`--network host` and containers share the host's network, reaching the test's servers on
127.0.0.1.

Every step is bounded; a failure says which step and shows the tail of its log.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

from modstack.processes import BackgroundProcess, log_tail
from modstack.waits import GiveUp, wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = REPO_ROOT / "var" / "cache" / "container"
BASE_IMAGE = "modstack-base:bookworm"
PROJECT_IMAGE = "modstack:test"
SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# what the Dockerfile needs from a base: python3 (3.11 on bookworm), its venv module (with pip,
# through ensurepip) and the CA certificates for downloading from PyPI
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")

DOCKERD_START_TIMEOUT_S = 30.0
LOCK_TIMEOUT_S = 1_200.0
DEBOOTSTRAP_TIMEOUT_S = 600.0
BUILD_TIMEOUT_S = 1_200.0
CLI_TIMEOUT_S = 120.0
# the Dockerfile's non-root user
IMAGE_UID = 10001
# no bridge network (it needs iptables and a network namespace per container, not available or
# wanted here); the ulimits are dockerd's own defaults spelled out, since the host's can be
# unlimited and containerd refuses those
DOCKERD_FLAGS = (
    "--bridge=none",
    "--iptables=false",
    "--ip6tables=false",
    "--ip-masq=false",
    "--default-ulimit",
    "nofile=20000:20000",
    "--default-ulimit",
    "nproc=4096:4096",
)
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class DockerUnavailable(RuntimeError):
    """Docker cannot run here or a step failed; the message says what to do or what failed."""


class MissingTools(DockerUnavailable):
    """dockerd, a BuildKit-capable docker CLI or debootstrap is not installed."""


@dataclass(frozen=True)
class Tools:
    """The programs the container tests run."""

    dockerd: str
    docker: str
    debootstrap: str


def _cli_builds_with_buildkit(cli: str) -> bool:
    """`DOCKER_BUILDKIT=1 docker build` works: a CLI before 23.0 has BuildKit built in; a newer
    one hands builds to the buildx plugin and refuses without it."""
    try:
        done = subprocess.run(
            [cli, "version", "--format", "{{.Client.Version}}"],
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_S,
            check=False,
        )
        major = int(re.match(r"\d+", done.stdout.strip()).group())  # type: ignore[union-attr]
    except (OSError, subprocess.TimeoutExpired, AttributeError, ValueError):
        return False
    if major < 23:
        return True
    buildx = subprocess.run(
        [cli, "buildx", "version"], capture_output=True, timeout=CLI_TIMEOUT_S, check=False
    )
    return buildx.returncode == 0


def find_tools() -> Tools:
    """dockerd, a docker CLI that builds with BuildKit and debootstrap; MissingTools says what
    to install. The CLI next to dockerd (Debian's docker.io) is preferred over another on PATH."""
    dockerd = shutil.which("dockerd", path=SYSTEM_PATH)
    debootstrap = shutil.which("debootstrap", path=SYSTEM_PATH)
    candidates = [str(Path(dockerd).resolve().parents[1] / "bin" / "docker")] if dockerd else []
    on_path = shutil.which("docker", path=SYSTEM_PATH)
    if on_path:
        candidates.append(on_path)
    docker = next(
        (c for c in candidates if Path(c).exists() and _cli_builds_with_buildkit(c)), None
    )
    if dockerd is None or docker is None or debootstrap is None:
        raise MissingTools(
            "the container test needs dockerd, a docker CLI that builds with BuildKit and "
            "debootstrap: `apt-get install docker.io debootstrap` (`make setup` does it as root)"
        )
    return Tools(dockerd=dockerd, docker=docker, debootstrap=debootstrap)


def debian_mirror() -> str:
    """The Debian mirror: DEBIAN_MIRROR, else the one apt is configured with here (it is the
    one known to be reachable), else deb.debian.org."""
    if os.environ.get("DEBIAN_MIRROR"):
        return os.environ["DEBIAN_MIRROR"]
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for stanza in path.read_text().split("\n\n"):
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
            suites = re.search(r"^Suites:\s*(.+)$", stanza, re.M)
            if uris and suites and SUITE in suites.group(1).split():
                return uris.group(1)
    sources = Path("/etc/apt/sources.list")
    if sources.exists():
        match = re.search(rf"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+{SUITE}\s", sources.read_text(), re.M)
        if match:
            return match.group(1)
    return DEFAULT_MIRROR


def ca_bundle() -> Path | None:
    """The CA bundle this machine trusts, handed to the build as a secret (behind a
    TLS-inspecting proxy the base image's own CAs would refuse PyPI)."""
    for candidate in (os.environ.get("SSL_CERT_FILE"), "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


@dataclass(frozen=True)
class Docker:
    """A docker CLI bound to one engine's socket."""

    cli: str
    socket: Path

    def argv(self, *args: str) -> list[str]:
        """The docker command line for `args` against this engine."""
        return [self.cli, "-H", f"unix://{self.socket}", *args]

    def run(self, *args: str, timeout_s: float = CLI_TIMEOUT_S) -> str:
        """Run `docker args`; its stdout, or DockerUnavailable with its output."""
        try:
            done = subprocess.run(
                self.argv(*args),
                capture_output=True,
                text=True,
                timeout=timeout_s,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            what = " ".join(args[:3])
            raise DockerUnavailable(f"docker {what} took over {timeout_s:g} s") from exc
        if done.returncode != 0:
            raise DockerUnavailable(
                f"docker {' '.join(args)} failed ({done.returncode}): {done.stderr or done.stdout}"
            )
        return done.stdout

    def ping(self) -> bool:
        """True when the engine answers /_ping on its socket."""
        transport = httpx.HTTPTransport(uds=str(self.socket))
        try:
            with httpx.Client(transport=transport, timeout=1.0) as client:
                return client.get("http://docker/_ping").text == "OK"
        except httpx.HTTPError:
            return False

    def has_image(self, tag: str) -> bool:
        """True when the engine holds an image called `tag`."""
        return bool(self.run("images", "--quiet", tag).strip())

    def image_size_mb(self, tag: str) -> float:
        """The image's size (all its layers, uncompressed) in MB."""
        return int(self.run("image", "inspect", "--format", "{{.Size}}", tag)) / 1e6


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `lock_path` (wait at most LOCK_TIMEOUT_S for another session)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as handle:

        def taken() -> bool:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True

        wait_until(
            taken,
            LOCK_TIMEOUT_S,
            f"the lock on {lock_path} (another test session is using this Docker data root)",
            interval_s=1.0,
        )
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def running_dockerd(cache_dir: Path, log_dir: Path) -> Iterator[Docker]:
    """A dockerd of the test's own: data root under `cache_dir` (kept between runs), socket,
    pid file and exec root in a fresh folder under /tmp (a unix socket path must stay short),
    stopped at the end. Needs root."""
    tools = find_tools()
    if os.geteuid() != 0:
        raise DockerUnavailable("dockerd needs root: run the container test as root")
    data_root = cache_dir / "docker"
    data_root.mkdir(parents=True, exist_ok=True)
    with _exclusive(cache_dir / "lock"):
        run_root = Path(tempfile.mkdtemp(prefix="modstack-dockerd-"))
        docker = Docker(cli=tools.docker, socket=run_root / "docker.sock")
        argv = [
            tools.dockerd,
            "--data-root",
            str(data_root),
            "--exec-root",
            str(run_root / "exec"),
            "--pidfile",
            str(run_root / "dockerd.pid"),
            "-H",
            f"unix://{docker.socket}",
            *DOCKERD_FLAGS,
        ]
        try:
            with BackgroundProcess(
                "dockerd",
                argv,
                log_dir / "dockerd.log",
                ready=docker.ping,
                timeout_s=DOCKERD_START_TIMEOUT_S,
                env={"PATH": SYSTEM_PATH},  # containerd, runc, docker-init are found by name
            ) as process:
                yield docker
                # dockerd stops containerd and what runs under it on SIGTERM; give it time
                process.stop(timeout_s=30)
        finally:
            _unmount_under(run_root)
            shutil.rmtree(run_root, ignore_errors=True)


def _unmount_under(folder: Path) -> None:
    """Unmount what dockerd left mounted under `folder` (its default network namespace stays
    mounted in the exec root after it exits), deepest first."""
    prefix = f"{folder}/"
    points = [
        line.split()[1]
        for line in Path("/proc/mounts").read_text().splitlines()
        if line.split()[1].startswith(prefix)
    ]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", point], capture_output=True, timeout=CLI_TIMEOUT_S, check=False)


def _run_step(
    what: str,
    argv: list[str],
    log: Path,
    timeout_s: float,
    *,
    env: Mapping[str, str] | None = None,
    stdin: IO[bytes] | None = None,
) -> None:
    """Run one step with its output appended to `log`; DockerUnavailable with the log's tail
    when it fails or overruns."""
    with log.open("ab") as out:
        try:
            done = subprocess.run(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL if stdin is None else stdin,
                timeout=timeout_s,
                check=False,
                env=env,
            )
        except subprocess.TimeoutExpired as exc:
            raise DockerUnavailable(f"{what} took over {timeout_s:g} s\n{log_tail(log)}") from exc
    if done.returncode != 0:
        raise DockerUnavailable(f"{what} failed ({done.returncode})\n{log_tail(log)}")


def ensure_base_image(docker: Docker, tag: str, cache_dir: Path, log: Path) -> float:
    """Make `tag` from `debootstrap --variant=minbase` of Debian bookworm with python3 and its
    venv module, unless the engine has it already; the seconds spent (0 when cached)."""
    if docker.has_image(tag):
        return 0.0
    tools = find_tools()
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="debootstrap-", dir=cache_dir))
    root = work / "rootfs"
    try:
        _run_step(
            f"debootstrap of {SUITE}",
            [
                tools.debootstrap,
                "--variant=minbase",
                f"--include={','.join(BASE_PACKAGES)}",
                SUITE,
                str(root),
                debian_mirror(),
            ],
            log,
            DEBOOTSTRAP_TIMEOUT_S,
            env={**os.environ, "PATH": SYSTEM_PATH, "DEBIAN_FRONTEND": "noninteractive"},
        )
        # what official Debian images leave out too: the downloaded packages and apt's lists
        for folder in (root / "var/cache/apt/archives", root / "var/lib/apt/lists"):
            for entry in folder.glob("*"):
                if entry.is_file():
                    entry.unlink()
        tar = subprocess.Popen(
            ["tar", "-C", str(root), "--numeric-owner", "-c", "."],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        try:
            _run_step(
                f"docker import of {tag}",
                docker.argv("import", "--change", 'CMD ["python3"]', "-", tag),
                log,
                CLI_TIMEOUT_S,
                stdin=tar.stdout,
            )
        finally:
            assert tar.stdout is not None
            tar.stdout.close()
            tar.wait(timeout=CLI_TIMEOUT_S)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return time.monotonic() - started


def build_image(docker: Docker, context: Path, tag: str, base_image: str, log: Path) -> float:
    """`docker build` of the project's Dockerfile on `base_image` with BuildKit (the cache and
    secret mounts) and the host's network (no bridge); the seconds it took."""
    args = ["build", "--progress", "plain", "--network", "host", "-t", tag]
    args += ["--build-arg", f"BASE_IMAGE={base_image}"]
    bundle = ca_bundle()
    if bundle is not None:
        args += ["--secret", f"id=ca-certificates,src={bundle}"]
    started = time.monotonic()
    _run_step(
        f"docker build of {tag}",
        docker.argv(*args, str(context)),
        log,
        BUILD_TIMEOUT_S,
        env={**os.environ, "DOCKER_BUILDKIT": "1"},
    )
    took = time.monotonic() - started
    # what this build did not use (the image it replaced, the layers of an older lock) would
    # pile up run after run; uv's download cache stays (a cached build does not touch it)
    docker.run("image", "prune", "--force")
    unused_for = f"until={math.ceil(took) + 1}s"
    docker.run("builder", "prune", "--force", "--filter", "type=regular", "--filter", unused_for)
    return took


@dataclass(frozen=True)
class Container:
    """A running container, by name."""

    docker: Docker
    name: str

    def running(self) -> bool:
        """True while the container's main process runs."""
        state = self.docker.run("inspect", "--format", "{{.State.Running}}", self.name)
        return state.strip() == "true"

    def logs(self, lines: int = 40) -> str:
        """The last lines the container wrote (stdout and stderr)."""
        done = subprocess.run(
            self.docker.argv("logs", "--tail", str(lines), self.name),
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_S,
            check=False,
        )
        return f"--- last {lines} lines of container {self.name} ---\n{done.stdout}{done.stderr}"


@contextmanager
def running_container(
    docker: Docker,
    name: str,
    image: str,
    command: list[str],
    *,
    env: Mapping[str, str],
    data_dir: Path,
    ready_url: str,
    timeout_s: float = 120.0,
) -> Iterator[Container]:
    """`image` running `command` as it would in production: its own non-root user, a read-only
    root filesystem with /tmp in memory, no capabilities, the host's network (the servers it
    talks to listen on 127.0.0.1 here), `data_dir` as /data (handed to the image's user).
    Yields once `ready_url` answers 2xx; removed at the end."""
    for path in (data_dir, *data_dir.rglob("*")):
        os.chown(path, IMAGE_UID, -1, follow_symlinks=False)
    args = ["run", "--detach", "--name", name, "--network", "host", "--read-only"]
    args += ["--tmpfs", "/tmp", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"]
    args += ["--volume", f"{data_dir}:/data"]
    for key, value in env.items():
        args += ["--env", f"{key}={value}"]
    docker.run(*args, image, *command)
    container = Container(docker, name)
    try:

        def ready() -> bool:
            if not container.running():
                raise GiveUp(f"container {name} exited")
            try:
                return httpx.get(ready_url, timeout=2.0).is_success
            except httpx.HTTPError:
                return False

        try:
            wait_until(ready, timeout_s, f"{name} at {ready_url}", interval_s=0.5)
        except (GiveUp, TimeoutError) as exc:
            raise DockerUnavailable(f"{exc}\n{container.logs()}") from None
        yield container
    finally:
        with contextlib.suppress(DockerUnavailable):
            docker.run("rm", "--force", name)
