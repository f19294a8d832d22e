"""The npm programs of the local stack, today one: s3rver, the S3 server on disk that the
durable broker (Tansu on S3 storage) and the scale profile's MLflow artifacts live in.

stack/npm/ holds their package.json and package-lock.json; `make setup` (through
`python -m stack.system_deps`) runs `npm ci` on a copy in the venv (`.venv/npm`), which installs
exactly the locked tree. Idempotent: nothing runs when the venv has the same lock installed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from modstack.processes import S3RVER_VERSION, npm_tools_dir

SOURCE = Path(__file__).resolve().with_name("npm")
MANIFESTS = ("package.json", "package-lock.json")
NPM_TIMEOUT_S = 300


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
