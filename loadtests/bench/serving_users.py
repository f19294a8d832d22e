"""The locustfile of `python -m loadtests.bench.serving`: one User class per target.

The runner (loadtests.bench.serving_runs) starts `locust -f <this file> <UserClass>` and
configures the users through environment variables: BENCH_MESSAGES (the prepared mails, a
JSON file) and BENCH_RATE_PER_USER (0: closed loop; above 0: open loop at that rate).
"""

from __future__ import annotations

import functools
import json
import os
import random
import uuid
from pathlib import Path
from typing import Any

import gevent
from locust import FastHttpUser, between, constant_throughput, task

from loadtests.bench.serving_runs import MESSAGES_ENV, RATE_ENV


@functools.cache
def _bench_messages() -> list[dict[str, Any]]:
    # once per locust process, not per user: 200 users each parsing the mails file kept
    # locust at 100 % of a core and 2.7 GB during the measured window
    path = os.environ.get(MESSAGES_ENV)
    messages: list[dict[str, Any]] = json.loads(Path(path).read_text()) if path else []
    return messages


def _rate_per_user() -> float:
    return float(os.environ.get(RATE_ENV, "0") or 0)


def _wait_time() -> Any:
    rate = _rate_per_user()
    # closed loop: the `make loadtest` think time; open loop: a fixed rate per user
    return constant_throughput(rate) if rate > 0 else between(0.0, 0.05)


def _desynchronize() -> None:
    """Open loop: start each user at a random phase of its period, or users spawned together
    fire in lockstep (bursts of all users at once instead of a steady rate)."""
    rate = _rate_per_user()
    if rate > 0:
        gevent.sleep(random.uniform(0, 1 / rate))


class FullPathUser(FastHttpUser):
    """POST /v1/moderate with a future mail (fresh message id per call)."""

    wait_time = _wait_time()

    def on_start(self) -> None:
        self.messages = _bench_messages()
        _desynchronize()

    @task
    def moderate(self) -> None:
        message = dict(random.choice(self.messages)["request"])
        message["message_id"] = f"{message['message_id']}~{uuid.uuid4().hex[:12]}"
        self.client.post("/v1/moderate", json=message, name="score")


class MlflowUser(FastHttpUser):
    """POST /invocations with the same mail as one dataframe_split row."""

    wait_time = _wait_time()

    def on_start(self) -> None:
        self.messages = _bench_messages()
        _desynchronize()

    @task
    def invocations(self) -> None:
        self.client.post("/invocations", json=random.choice(self.messages)["mlflow"], name="score")
