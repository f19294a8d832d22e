"""The project image, built once per session on a dockerd of the test's own
(tests/support/docker.py).

What stands in for what a user has, and why:
- the base image is Debian bookworm from `debootstrap --variant=minbase` + `docker import`,
  not python:3.11-slim: no image registry is reachable here (bookworm's python3 is 3.11, the
  Dockerfile installs into a venv either way);
- dockerd runs with no bridge network (--bridge=none): builds use `--network host` and the
  containers share the host's network, reaching the session's Tansu and MLflow on 127.0.0.1.

The base image, the dependency layer and BuildKit's uv cache stay in var/cache/container, so
a second run builds only the project's own layer. The steps' seconds and the image size go to
var/run/results/container.json.

Skipped, with what to install, only where Docker cannot run at all (no root, or dockerd and
debootstrap missing where `make setup` cannot install them); a dockerd that does not start or
a build that fails is a failure.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from modstack.results import Result, ResultTable, write_result
from stack.system_deps import can_use_apt
from tests.support.docker import (
    BASE_IMAGE,
    CACHE_DIR,
    PROJECT_IMAGE,
    REPO_ROOT,
    Docker,
    MissingTools,
    build_image,
    ensure_base_image,
    find_tools,
    running_dockerd,
)


@dataclass
class BuiltImage:
    """The project image on a running engine, and what each step cost (seconds)."""

    docker: Docker
    tag: str
    log_dir: Path
    seconds: dict[str, float] = field(default_factory=dict)


def _docker_or_skip() -> None:
    """Skip when this machine cannot run Docker; fail when `make setup` should have made it."""
    try:
        find_tools()
    except MissingTools as exc:
        if can_use_apt():
            pytest.fail(f"{exc}; `make setup` installs them here (root, apt-get): run it")
        pytest.skip(str(exc))
    if os.geteuid() != 0:
        pytest.skip("the container test starts a dockerd of its own, which needs root")


def _write_result(image: BuiltImage, size_mb: float) -> None:
    rows: list[list[object]] = [[step, round(s, 1)] for step, s in image.seconds.items()]
    write_result(
        Result(
            name="container",
            title="The project image built and run (make test-container)",
            command="make test-container",
            tables=[ResultTable(caption="Seconds per step", columns=["step", "s"], rows=rows)],
            notes=[
                f"Image {image.tag} on base {BASE_IMAGE} (debootstrap of Debian bookworm "
                f"standing in for python:3.11-slim): {size_mb:,.0f} MB.",
                "base_image_s is 0 and build_s covers the project layer only when "
                "var/cache/container holds the previous run's engine data.",
            ],
            data={"seconds": image.seconds, "image_size_mb": size_mb},
        )
    )


@pytest.fixture(scope="session")
def project_image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BuiltImage]:
    """The repository's Dockerfile built on the debootstrap base, on a running private dockerd."""
    _docker_or_skip()
    log_dir = tmp_path_factory.mktemp("container")
    started = time.monotonic()
    with running_dockerd(CACHE_DIR, log_dir) as docker:
        image = BuiltImage(docker, PROJECT_IMAGE, log_dir)
        image.seconds["dockerd_start_s"] = time.monotonic() - started
        image.seconds["base_image_s"] = ensure_base_image(
            docker, BASE_IMAGE, CACHE_DIR, log_dir / "debootstrap.log"
        )
        image.seconds["build_s"] = build_image(
            docker, REPO_ROOT, PROJECT_IMAGE, BASE_IMAGE, log_dir / "build.log"
        )
        print(f"\n[fixture] {PROJECT_IMAGE} built: {image.seconds}")
        yield image
        size_mb = docker.image_size_mb(PROJECT_IMAGE)
    image.seconds["total_s"] = time.monotonic() - started
    _write_result(image, size_mb)
