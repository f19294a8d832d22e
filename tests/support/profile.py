"""Which profile the integration and fault tests run in, and the scale profile's servers.

MODSTACK_PROFILE=local (the default): each test starts what it needs; the session broker is
Tansu in memory (speed: durability is the fault tests' subject), MLflow runs on SQLite, Feast
and the review queue on files.

MODSTACK_PROFILE=scale: the session starts the servers `modstack up --profile scale` runs,
PostgreSQL, Redis and the S3 server, once; the session broker is Tansu on S3 storage, MLflow
keeps its runs in PostgreSQL and its artifacts in the S3 server, and each test module gets
stores of its own on those servers (databases and a Redis database), set in the environment
with the variables of `stack.programs.profile_environment`: the services a test starts and the
store a test opens find them there, as they do under `modstack up --profile scale`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest
from sqlalchemy.engine import make_url

from modstack.processes import MLFLOW_BUCKET, TANSU_BUCKET
from modstack.settings import get_settings
from stack.programs import PG_USER, StackSettings, create_databases, profile_environment
from tests.support.postgres import running_postgres
from tests.support.redis import running_redis
from tests.support.s3 import S3Server

PROFILE_ENV = "MODSTACK_PROFILE"
Profile = Literal["local", "scale"]
REDIS_DATABASES = 16  # redis-server's default count; modules take them in turn, flushed first


def profile_name() -> Profile:
    """The profile this test session runs in (MODSTACK_PROFILE, default local)."""
    value = os.environ.get(PROFILE_ENV, "local") or "local"
    if value not in ("local", "scale"):
        raise pytest.UsageError(f"{PROFILE_ENV}={value!r}: expected local or scale")
    return value  # type: ignore[return-value]


def profile_suffix(separator: str = "-") -> str:
    """What a results name gets in this profile, so both profiles' runs keep their numbers side
    by side: "" in the local profile, e.g. "-scale" in the scale one."""
    return "" if profile_name() == "local" else f"{separator}{profile_name()}"


# The variables naming a module's stores in the scale profile (none in the local profile).
STORE_VARIABLES = tuple(profile_environment(StackSettings(stack_profile="scale")))


def store_environment() -> dict[str, str]:
    """The stores this test module uses, as a process started outside pytest (a container)
    needs them: the scale profile's variables as tests/conftest.py set them; {} locally."""
    return {key: os.environ[key] for key in STORE_VARIABLES if key in os.environ}


@dataclass
class ScaleServers:
    """The scale profile's servers of this session."""

    s3: S3Server
    stack: StackSettings  # their addresses, as `modstack up --profile scale` would have them
    modules: int = 0  # stores handed out so far

    def next_stores(self) -> tuple[str, int]:
        """A database suffix and a Redis database no module had before."""
        self.modules += 1
        return f"_m{self.modules}", self.modules % REDIS_DATABASES


@contextmanager
def running_scale_servers(workdir: Path) -> Iterator[ScaleServers]:
    """PostgreSQL, Redis and the S3 server on free loopback ports, stopped at the end."""
    s3 = S3Server.in_folder(workdir / "s3", buckets=(TANSU_BUCKET, MLFLOW_BUCKET)).start()
    try:
        with (
            running_redis(workdir / "redis") as redis_address,
            running_postgres(db_user=PG_USER) as url,
        ):
            pg = make_url(url)
            stack = StackSettings(
                stack_profile="scale",
                s3_addr=s3.endpoint,
                postgres_addr=f"{pg.host}:{pg.port}",
                redis_addr=redis_address,
            )
            yield ScaleServers(s3=s3, stack=stack)
    finally:
        s3.stop()


@contextmanager
def module_stores(servers: ScaleServers, module: str) -> Iterator[dict[str, str]]:
    """Fresh databases and a flushed Redis database for one test module, set in the
    environment while it runs; yields the variables."""
    import redis

    suffix, redis_db = servers.next_stores()
    suffix += "_" + re.sub(r"[^a-z0-9]+", "_", module.rsplit(".", 1)[-1].lower())[:30]
    env = profile_environment(servers.stack, database_suffix=suffix, redis_db=redis_db)
    databases = [
        make_url(env[key]).database or ""
        for key in (
            "FEAST_REGISTRY_PATH",
            "REVIEW_DATABASE_URL",
            "MESSAGE_LOG_DATABASE_URL",
            "DEADLETTER_DATABASE_URL",
        )
    ]
    create_databases(servers.stack, sorted(set(databases)))
    redis.Redis(port=servers.stack.redis_port, db=redis_db, socket_timeout=5).flushdb()
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("FEAST_ONLINE_STORE", raising=False)  # derived from the type instead
        for key, value in env.items():
            patch.setenv(key, value)
        get_settings.cache_clear()
        yield env
    get_settings.cache_clear()


def scale_mlflow(servers: ScaleServers) -> tuple[dict[str, str], dict[str, str]]:
    """(keyword arguments of `mlflow_argv`, extra environment) for an MLflow server on the
    scale profile's PostgreSQL (database `mlflow`) with its artifacts in the S3 server."""
    from modstack.processes import s3_client_env

    create_databases(servers.stack, ["mlflow"])
    return (
        {
            "backend_store_uri": servers.stack.postgres_url("mlflow"),
            "artifacts_destination": f"s3://{MLFLOW_BUCKET}/",
        },
        s3_client_env(servers.s3.endpoint),
    )
