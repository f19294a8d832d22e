"""The local S3 server of the stack, the one Node program it runs: the durable broker (Tansu on
S3 storage) and the scale profile's MLflow artifacts live in it, as files under a folder.

stack/npm/s3-server.js runs s3rver with the conditional and atomic writes Tansu relies on (the
file says why). stack/npm/ also holds s3rver's package.json and package-lock.json; `make setup`
(through `python -m stack.system_deps`) runs `npm ci` on a copy in the venv (`.venv/npm`), which
installs exactly the locked tree; the server finds it through NODE_PATH. Idempotent: nothing
runs when the venv has the same lock installed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from modstack.processes import TANSU_BUCKET, MissingBinary

SOURCE = Path(__file__).resolve().with_name("npm")
SERVER_SCRIPT = SOURCE / "s3-server.js"
MANIFESTS = ("package.json", "package-lock.json")
S3RVER_VERSION = "3.7.1"
NPM_TIMEOUT_S = 300


def npm_tools_dir() -> Path:
    """Where `make setup` installs the npm packages: inside the venv, so a new venv gets them
    again and `make clean` keeps them."""
    return Path(sys.prefix) / "npm"


def s3_server_argv(
    port: int, data_dir: Path, buckets: Sequence[str] = (TANSU_BUCKET,), host: str = "127.0.0.1"
) -> list[str]:
    """The local S3 server on host:port, keeping objects as files under `data_dir`, with
    `buckets` created at start (existing ones are kept). Run it with `s3_server_env()`."""
    node = shutil.which("node")
    if node is None:
        raise MissingBinary(
            "the local S3 server needs Node.js: `apt-get install nodejs npm`, then `make setup` "
            "(or BROKER_STORAGE=memory for a broker that loses its messages when it stops)"
        )
    if installed_version() is None:
        raise MissingBinary(
            f"the local S3 server's package (npm s3rver@{S3RVER_VERSION}) is not installed in "
            f"{npm_tools_dir()}: run `make setup` (or `python -m stack.node_tools`)"
        )
    argv = [node, str(SERVER_SCRIPT), "--directory", str(data_dir.resolve())]
    argv += ["--address", host, "--port", str(port)]
    for bucket in buckets:
        argv += ["--bucket", bucket]
    return argv


def s3_server_env() -> dict[str, str]:
    """Where the server's script finds s3rver and its dependencies."""
    return {"NODE_PATH": str(npm_tools_dir() / "node_modules")}


def installed_version(target: Path | None = None) -> str | None:
    """The s3rver version installed in the venv's npm folder, None when there is none."""
    manifest = (target or npm_tools_dir()) / "node_modules" / "s3rver" / "package.json"
    try:
        return str(json.loads(manifest.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


def up_to_date(target: Path | None = None) -> bool:
    """True when the venv holds the committed lock's tree (same lock, s3rver installed)."""
    folder = target or npm_tools_dir()
    try:
        same_lock = (folder / MANIFESTS[1]).read_bytes() == (SOURCE / MANIFESTS[1]).read_bytes()
    except OSError:
        return False
    return same_lock and installed_version(folder) == S3RVER_VERSION


def install(target: Path | None = None, say: Callable[[str], None] = print) -> bool:
    """`npm ci` the locked tree into the venv unless it is there; False (with the reason said)
    when npm is missing or fails: the stack then says what to do when it needs s3rver."""
    folder = target or npm_tools_dir()
    if up_to_date(folder):
        say(f"[system] s3rver {S3RVER_VERSION}: present in {folder}")
        return True
    npm = shutil.which("npm")
    if npm is None:
        say(
            "[system] MISSING npm: needed to install s3rver, the local broker's S3 server; "
            "install: `sudo apt-get install npm`, then `make setup`"
        )
        return False
    folder.mkdir(parents=True, exist_ok=True)
    for name in MANIFESTS:
        shutil.copyfile(SOURCE / name, folder / name)
    started = time.monotonic()
    argv = [npm, "ci", "--omit=dev", "--no-audit", "--no-fund", "--prefix", str(folder)]
    try:
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        say(f"[system] `npm ci` for s3rver took over {NPM_TIMEOUT_S} s; gave up")
        return False
    if done.returncode != 0:
        say(f"[system] `npm ci` for s3rver failed ({done.returncode}):\n{done.stderr[-2000:]}")
        return False
    seconds = time.monotonic() - started
    say(f"[system] installed s3rver {S3RVER_VERSION} into {folder} in {seconds:.0f} s")
    return True


if __name__ == "__main__":
    raise SystemExit(0 if install() else 1)
