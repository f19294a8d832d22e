"""Shared session fixtures: a real Tansu broker and a real MLflow server on free loopback ports.

Each starts once per test session, only when a test asks for it, logs to a file under the
session's tmp dir, and is stopped at the end. A failing test that used one of them gets the
tail of that process's log in its report.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from modstack.kafka import ensure_topics
from modstack.processes import (
    MLFLOW_SERVER_ENV,
    TANSU_STOP_SIGNAL,
    BackgroundProcess,
    http_ok,
    kafka_ready,
    log_tail,
    mlflow_argv,
    tansu_argv,
)
from modstack.settings import get_settings
from modstack.waits import free_port
from tests.support.profile import (
    ScaleServers,
    module_stores,
    profile_name,
    running_scale_servers,
    scale_mlflow,
)
from tests.support.s3 import tansu_on_s3

KAFKA_START_TIMEOUT_S = 20.0
# `mlflow server` needs ~12 s on an idle 2-core machine; other test processes share the cores.
MLFLOW_START_TIMEOUT_S = 120.0

# fixture name -> log file of the process behind it (for failure reports)
_PROCESS_LOGS: dict[str, Path] = {}


def _set_env_for_session(name: str, value: str) -> Iterator[str]:
    """Yield `value` with env var `name` set to it (settings cache dropped around it)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(name, value)
        get_settings.cache_clear()
        yield value
    get_settings.cache_clear()


@contextmanager
def running_tansu(workdir: Path, owner: str, scale: ScaleServers | None = None) -> Iterator[str]:
    """A real Tansu broker on a free port with the ARCHITECTURE topics; yields its address.
    In memory, or on the scale profile's S3 server (`scale`, a cluster of its own).

    `owner` is the fixture that uses it: a failing test that used the fixture gets the tail
    of this broker's log in its report.
    """
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    log_path = workdir / "tansu.log"
    _PROCESS_LOGS[owner] = log_path
    started = time.monotonic()
    broker = BackgroundProcess(
        "Tansu broker",
        tansu_argv(port),
        log_path,
        ready=lambda: kafka_ready(bootstrap),
        timeout_s=KAFKA_START_TIMEOUT_S,
        stop_signal=TANSU_STOP_SIGNAL,
    )
    if scale is not None:
        broker = tansu_on_s3(bootstrap, scale.s3, log_path, cluster_id=f"{owner}-{port}")
    with broker:
        ensure_topics(bootstrap)
        print(f"\n[fixture] Tansu at {bootstrap} ready in {time.monotonic() - started:.2f} s")
        yield bootstrap


@pytest.fixture(scope="session")
def scale_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScaleServers | None]:
    """The scale profile's PostgreSQL, Redis and S3 server (MODSTACK_PROFILE=scale), else None."""
    if profile_name() != "scale":
        yield None
        return
    with running_scale_servers(tmp_path_factory.mktemp("scale")) as servers:
        yield servers


@pytest.fixture(autouse=True, scope="module")
def _scale_stores_per_module(request: pytest.FixtureRequest) -> Iterator[None]:
    """In the scale profile, each module's stores on the session's servers (the environment
    the services and stores read); nothing in the local profile."""
    if profile_name() != "scale":
        yield
        return
    with module_stores(request.getfixturevalue("scale_servers"), request.module.__name__):
        yield


@pytest.fixture(scope="session")
def kafka_bootstrap(
    tmp_path_factory: pytest.TempPathFactory, scale_servers: ScaleServers | None
) -> Iterator[str]:
    """Address "127.0.0.1:PORT" of a real Tansu broker with the ARCHITECTURE topics created.

    Also sets KAFKA_BOOTSTRAP_SERVERS for the session so code reading settings finds it.
    """
    workdir = tmp_path_factory.mktemp("kafka")
    with running_tansu(workdir, "kafka_bootstrap", scale_servers) as bootstrap:
        yield from _set_env_for_session("KAFKA_BOOTSTRAP_SERVERS", bootstrap)


@pytest.fixture(scope="module")
def private_kafka(
    tmp_path_factory: pytest.TempPathFactory, scale_servers: ScaleServers | None
) -> Iterator[str]:
    """A broker of the module's own, for tests that count every event on a topic: the
    session broker still holds what earlier modules produced (a new consumer group reads
    from the earliest offset)."""
    workdir = tmp_path_factory.mktemp("private-kafka")
    with running_tansu(workdir, "private_kafka", scale_servers) as bootstrap:
        yield bootstrap


@pytest.fixture(scope="session")
def mlflow_tracking_uri(
    tmp_path_factory: pytest.TempPathFactory, scale_servers: ScaleServers | None
) -> Iterator[str]:
    """URI "http://127.0.0.1:PORT" of a real `mlflow server` (SQLite + local artifacts in a
    tmp dir; PostgreSQL + the S3 server in the scale profile); MLFLOW_TRACKING_URI points at
    it for the whole session."""
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    store = tmp_path_factory.mktemp("mlflow")
    log_path = store / "mlflow-server.log"
    _PROCESS_LOGS["mlflow_tracking_uri"] = log_path
    stores, env = scale_mlflow(scale_servers) if scale_servers else ({}, {})
    started = time.monotonic()
    with BackgroundProcess(
        "MLflow server",
        mlflow_argv(port, store, **stores),
        log_path,
        ready=lambda: http_ok(f"{uri}/health"),
        timeout_s=MLFLOW_START_TIMEOUT_S,
        env={**MLFLOW_SERVER_ENV, **env},
    ):
        print(f"\n[fixture] MLflow at {uri} ready in {time.monotonic() - started:.2f} s")
        yield from _set_env_for_session("MLFLOW_TRACKING_URI", uri)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """Attach the log tail of the shared processes a failing test used."""
    report = yield
    if report.failed:
        used = getattr(item, "fixturenames", ())
        for fixture_name, path in _PROCESS_LOGS.items():
            if fixture_name in used:
                tail = log_tail(path, lines=40)
                if tail:
                    report.sections.append((f"log of {fixture_name}", tail))
    return report


def pytest_configure(config: pytest.Config) -> None:
    # Child processes and MLflow clients in tests must never phone home.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "1")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In the scale profile, leave out the tests that pick their backends themselves
    (`backends_chosen`): they run the same in either session, so the local one runs them."""
    if profile_name() != "scale":
        return
    chosen = [item for item in items if item.get_closest_marker("backends_chosen")]
    if chosen:
        config.hook.pytest_deselected(items=chosen)
        items[:] = [item for item in items if not item.get_closest_marker("backends_chosen")]


@pytest.fixture(autouse=True, scope="module")
def _fresh_registry_per_module() -> Iterator[None]:
    """Modules share one MLflow server, not its registry state: each module starts with a
    `spam-classifier` that has no aliases and no rollout state (the server is started once per
    session, so earlier modules' champions would otherwise leak into the next module)."""
    # the server is up: clear what earlier modules set
    if "mlflow_tracking_uri" in _PROCESS_LOGS and os.environ.get("MLFLOW_TRACKING_URI"):
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        from modstack.names import REGISTERED_MODEL

        client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
        try:
            model = client.get_registered_model(REGISTERED_MODEL)
        except MlflowException:
            model = None
        if model is not None:
            for alias in list(model.aliases):
                client.delete_registered_model_alias(REGISTERED_MODEL, alias)
            for key in list(model.tags):
                client.delete_registered_model_tag(REGISTERED_MODEL, key)
    yield
