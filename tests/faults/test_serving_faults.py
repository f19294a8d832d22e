"""Serving-side faults from outside the code, on real processes: a private Tansu, a private
MLflow server with a registered champion and challenger, `python -m services.serving` (uvicorn,
one worker) and `python -m services.canary`, each on a free port.

- the broker stopped and started again: /v1/moderate keeps answering 200; the prediction
  events it could not deliver are counted (serving_prediction_events_total{outcome=failed|
  dropped}) and delivery resumes once the broker is back, without a restart;
- MLflow SIGKILLed: serving answers with the versions it holds, /readyz names the registry as
  degraded; the canary controller holds its rollout (no step, no rollback) until MLflow is back;
- the SQLite online store overwritten with garbage: /v1/moderate answers 200 with every feature
  listed in `missing_features` (docs/serving.md says why not 503), and reads it again once the
  file is restored.

What each fault cost goes to var/run/results/faults-serving.json (docs/serving.md quotes it).
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from modstack.kafka import ensure_topics
from modstack.names import FEATURE_SERVICE_V1, REGISTERED_MODEL
from modstack.processes import (
    MLFLOW_SERVER_ENV,
    BackgroundProcess,
    child_env,
    http_ok,
    mlflow_argv,
)
from modstack.results import Result, ResultTable, write_result
from modstack.waits import free_port, wait_until
from tests.support.processes import kill, metric_total, start_module, start_tansu
from tests.support.profile import profile_name, profile_suffix
from tests.support.serving_stack import future_messages, register_model, training_frame

pytestmark = [pytest.mark.integration, pytest.mark.faults]

REPO_ROOT = Path(__file__).resolve().parents[2]
TOKEN = "serving-faults-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
COMMAND = "pytest tests/faults/test_serving_faults.py"
# one request every 50 ms from one client while a fault is on
PAUSE_S = 0.05


@dataclass
class Stack:
    tmp: Path
    bootstrap: str
    broker: BackgroundProcess
    mlflow_port: int
    mlflow_store: Path
    mlflow: BackgroundProcess
    data_dir: Path
    champion: str
    challenger: str
    messages: list[dict[str, str]]
    known_sender: str
    serving_url: str = ""
    serving: BackgroundProcess | None = None
    started: list[BackgroundProcess] = field(default_factory=list)
    costs: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def mlflow_uri(self) -> str:
        return f"http://127.0.0.1:{self.mlflow_port}"

    def start_broker(self, log_name: str) -> None:
        self.broker = start_tansu(self.bootstrap, self.tmp / log_name)
        # memory-only Tansu comes back empty; a real broker keeps its topics
        ensure_topics(self.bootstrap)

    def start_mlflow(self, log_name: str) -> None:
        self.mlflow = BackgroundProcess(
            "MLflow server",
            mlflow_argv(self.mlflow_port, self.mlflow_store),
            self.tmp / log_name,
            ready=lambda: http_ok(f"{self.mlflow_uri}/health"),
            timeout_s=120,
            env=MLFLOW_SERVER_ENV,
        ).start()

    def env(self, extra: dict[str, str]) -> dict[str, str]:
        return child_env(
            {
                "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
                "MLFLOW_TRACKING_URI": self.mlflow_uri,
                "DATA_DIR": str(self.data_dir),
                "FEAST_REPO_PATH": str(REPO_ROOT / "features"),
                "ADMIN_TOKEN": TOKEN,
                "BIND_HOST": "127.0.0.1",
                **extra,
            }
        )

    def start(self, name: str, module: str, ready_url: str, extra: dict[str, str]) -> Any:
        process = start_module(name, module, self.tmp, ready_url, self.env(extra))
        self.started.append(process)
        return process

    def message(self, i: int, sender: str | None = None) -> dict[str, str]:
        base = self.messages[i % len(self.messages)]
        return {**base, "message_id": f"flt-{uuid.uuid4().hex[:10]}"} | (
            {"sender_id": sender} if sender else {}
        )


class Traffic:
    """One client posting /v1/moderate every PAUSE_S; keeps (time, status, body or None)."""

    def __init__(self, stack: Stack, sender: str | None = None) -> None:
        self.stack = stack
        self.sender = sender
        self.answers: list[tuple[float, int, dict[str, Any] | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.stack.serving_url, timeout=10) as client:
            i = 0
            while not self._stop.is_set():
                try:
                    response = client.post("/v1/moderate", json=self.stack.message(i, self.sender))
                    # the spam policy's decision (the only policy these replicas score)
                    body = (
                        response.json()["policies"]["spam"] if response.status_code == 200 else None
                    )
                    self.answers.append((time.monotonic(), response.status_code, body))
                except httpx.TransportError:
                    self.answers.append((time.monotonic(), 0, None))
                i += 1
                time.sleep(PAUSE_S)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def errors(self) -> list[tuple[float, int]]:
        return [(t, code) for t, code, _ in self.answers if code != 200]

    def error_seconds(self) -> float:
        """Seconds between the first and the last non-200 answer (0 when there was none)."""
        errors = self.errors()
        return round(errors[-1][0] - errors[0][0], 2) if errors else 0.0

    def cost(
        self, fault_s: float, undelivered: int, recovered_s: float, **more: object
    ) -> dict[str, Any]:
        """A fault's row of COST_COLUMNS (what the traffic saw) and `more` after them."""
        return {
            "fault_seconds": round(fault_s, 2),
            "requests": len(self.answers),
            "non_200_answers": len(self.errors()),
            "seconds_of_errors": self.error_seconds(),
            "events_undelivered": undelivered,
            "recovered_seconds": round(recovered_s, 2),
            **more,
        }


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    from mlflow import MlflowClient

    from features.sender import ACTIVITY_FEATURES
    from features.store import apply_repo, feature_columns, get_store, push_activity

    tmp = tmp_path_factory.mktemp("serving-faults")
    bootstrap = f"127.0.0.1:{free_port()}"
    broker = start_tansu(bootstrap, tmp / "tansu.log")
    ensure_topics(bootstrap)
    mlflow_port = free_port()
    store_dir = tmp / "mlflow"
    store_dir.mkdir()
    running = Stack(
        tmp, bootstrap, broker, mlflow_port, store_dir, broker, tmp / "data", "", "", [], ""
    )
    try:
        running.start_mlflow("mlflow.log")
        apply_repo(REPO_ROOT / "features", running.data_dir)
        store = get_store(REPO_ROOT / "features", running.data_dir)
        columns = feature_columns(store, FEATURE_SERVICE_V1)
        frame = training_frame(running.data_dir, columns)
        running.champion = register_model(
            running.mlflow_uri, REGISTERED_MODEL, frame, columns, seed=1
        )
        running.challenger = register_model(
            running.mlflow_uri, REGISTERED_MODEL, frame.sample(frac=0.7, random_state=2), columns, 2
        )
        client = MlflowClient(running.mlflow_uri)
        client.set_registered_model_alias(REGISTERED_MODEL, "champion", running.champion)
        client.set_registered_model_alias(REGISTERED_MODEL, "challenger", running.challenger)
        running.messages = future_messages(frame, 40)
        running.known_sender = running.messages[0]["sender_id"]
        push_activity(
            store,
            [
                {"sender_id": running.known_sender, "event_timestamp": pd.Timestamp.now(tz="UTC")}
                | dict.fromkeys(ACTIVITY_FEATURES, 3.0)
            ],
        )
        running.serving_url = f"http://127.0.0.1:{free_port()}"
        running.serving = running.start(
            "serving",
            "services.serving",
            f"{running.serving_url}/readyz",
            {
                "SERVING_ADDR": running.serving_url,
                "RUN_DIR": str(tmp / "serving-run"),
                "SERVING_WORKERS": "1",
                "SERVING_POLICIES": "spam",
                "SERVING_POLL_INTERVAL_S": "0.5",
                "SERVING_READY_CACHE_S": "0",
                # events the broker has not taken within 5 s are counted as undelivered
                "SERVING_PREDICTION_DELIVERY_TIMEOUT_S": "5",
            },
        )
        yield running
    finally:
        for process in reversed(running.started):
            process.stop()
        running.mlflow.stop()
        running.broker.stop()
        if running.costs:
            _write_results(running.costs)


def _write_results(costs: dict[str, dict[str, Any]]) -> None:
    rows = [[name, *(cost.get(k, "") for k in COST_COLUMNS)] for name, cost in costs.items()]
    write_result(
        Result(
            name=f"faults-serving{profile_suffix()}",
            title=f"Serving under faults from outside ({profile_name()} profile): what each cost",
            command=COMMAND,
            tables=[ResultTable("Cost of each fault", ["fault", *COST_COLUMNS], rows)],
            notes=[
                "One client posts /v1/moderate every 50 ms while the fault is on; "
                "serving runs one uvicorn worker.",
                "Undelivered prediction events: serving_prediction_events_total "
                "{outcome=failed} + {outcome=dropped}; SERVING_PREDICTION_DELIVERY_TIMEOUT_S=5 "
                "here (default 30).",
                "recovered_seconds: from the broker back to events delivered again; from MLflow "
                "back to /readyz without the registry entry; from the online store file "
                "restored to answers with the sender features again.",
                "The canary controller (CANARY_INTERVAL_S=600, no window judged in the test) "
                "kept its rollout's status, step and history through the MLflow outage.",
            ],
            data=costs,
        ),
        run_dir=REPO_ROOT / "var" / "run",
    )


COST_COLUMNS = [
    "fault_seconds",
    "requests",
    "non_200_answers",
    "seconds_of_errors",
    "events_undelivered",
    "recovered_seconds",
]


def test_broker_stopped_and_started_serving_answers_and_counts_undelivered_events(
    stack: Stack,
) -> None:
    metrics_url = f"{stack.serving_url}/metrics"

    def counted(outcome: str) -> float:
        text = httpx.get(metrics_url, timeout=5).text
        return metric_total(text, "serving_prediction_events_total", outcome=outcome)

    wait_until(lambda: counted("sent") > 0 or http_ok(metrics_url), 10, "serving metrics")
    undelivered_before = counted("failed") + counted("dropped")
    with Traffic(stack) as traffic:
        wait_until(lambda: counted("sent") >= 5, 30, "prediction events delivered before")
        stopped_at = time.monotonic()
        kill(stack.broker)
        wait_until(
            lambda: counted("failed") + counted("dropped") > undelivered_before,
            60,
            "serving to count prediction events it could not deliver",
        )
        readyz_down = httpx.get(f"{stack.serving_url}/readyz", timeout=5).json()
        stack.start_broker("tansu-2.log")
        back_at = time.monotonic()
        sent_at_return = counted("sent")
        wait_until(
            lambda: counted("sent") >= sent_at_return + 5,
            60,
            "prediction events delivered again after the broker came back",
        )
        recovered_s = time.monotonic() - back_at
    undelivered = counted("failed") + counted("dropped") - undelivered_before
    stack.costs["broker stopped and started"] = traffic.cost(
        back_at - stopped_at, int(undelivered), recovered_s, readyz_while_down=readyz_down
    )
    assert traffic.errors() == [], "serving must answer while the broker is down"
    assert undelivered > 0
    assert readyz_down["ready"] is True and "predictions" in readyz_down["degraded"]
    assert stack.serving is not None and stack.serving.proc is not None
    assert stack.serving.proc.poll() is None


def test_mlflow_killed_serving_keeps_its_versions_and_the_canary_holds(stack: Stack) -> None:
    canary_url = f"http://127.0.0.1:{free_port()}"
    stack.start(
        "canary",
        "services.canary",
        f"{canary_url}/readyz",
        {
            "CANARY_ADDR": canary_url,
            "SERVING_ADDR": stack.serving_url,
            "CANARY_STEPS": "25,100",
            # no window gets judged during the test: what is shown is that a tick without the
            # registry changes nothing, and that the state is the same when MLflow is back
            "CANARY_INTERVAL_S": "600",
            "CANARY_TICK_S": "0.5",
            "CANARY_LABEL_JOIN": "false",
        },
    )
    with httpx.Client(base_url=canary_url, headers=ADMIN, timeout=30) as canary:
        started = canary.post("/v1/rollout/start", json={"challenger_version": stack.challenger})
        assert started.status_code == 200, started.text
        before = canary.get("/v1/rollout").json()
        assert before["status"] == "progressing"
        wait_until(
            lambda: (
                (
                    httpx.get(f"{stack.serving_url}/healthz").json()["policies"]["spam"]["rollout"]
                    or {}
                ).get("status")
                == "progressing"
            ),
            15,
            "serving to follow the rollout",
        )
        with Traffic(stack) as traffic:
            time.sleep(1.0)
            killed_at = time.monotonic()
            kill(stack.mlflow)
            wait_until(
                lambda: "registry" in httpx.get(f"{stack.serving_url}/readyz").json()["degraded"],
                20,
                "serving /readyz to report the registry degraded",
            )
            readyz = httpx.get(f"{stack.serving_url}/readyz", timeout=5).json()
            canary_ready = httpx.get(f"{canary_url}/readyz", timeout=10)
            time.sleep(4.0)  # several canary ticks and serving polls without the registry
            stack.start_mlflow("mlflow-2.log")
            back_at = time.monotonic()
            wait_until(
                lambda: (
                    "registry" not in httpx.get(f"{stack.serving_url}/readyz").json()["degraded"]
                ),
                30,
                "serving to read the registry again",
            )
            caught_up_s = time.monotonic() - back_at
        after = canary.get("/v1/rollout").json()
    during = [a for a in traffic.answers if killed_at <= a[0] <= back_at]
    versions = {(b["variant"], b["model_version"]) for _, code, b in during if b}
    stack.costs["MLflow SIGKILLed"] = traffic.cost(
        back_at - killed_at,
        0,
        caught_up_s,
        readyz_while_down=readyz,
        canary_readyz_status_while_down=canary_ready.status_code,
        canary_step_before_after=[before["step"], after["step"]],
        canary_status_before_after=[before["status"], after["status"]],
    )
    assert traffic.errors() == []
    assert during, "no request was answered while MLflow was down"
    assert versions <= {("champion", stack.champion), ("challenger", stack.challenger)}
    assert "registry" in readyz["degraded"] and readyz["ready"] is True
    assert canary_ready.status_code == 503 and "MLflow" in canary_ready.text
    assert (after["status"], after["step"], after["weight_percent"]) == (
        before["status"],
        before["step"],
        before["weight_percent"],
    )
    assert after["history"] == before["history"]


@contextmanager
def _online_store_broken(stack: Stack) -> Iterator[None]:
    """The online store broken from outside while the block runs. Local: the SQLite file
    overwritten in place (same inode: the connection serving holds open reads garbage). Scale:
    the Redis server stopped with SIGSTOP, a hung server that keeps its connections open and
    never answers (the worse case for a client than a refused connection)."""
    from features.store import feast_data_dir, online_redis_client

    if profile_name() == "local":
        online_db = feast_data_dir(stack.data_dir) / "online.db"
        good = online_db.read_bytes()
        with online_db.open("r+b") as f:
            f.write(os.urandom(len(good)))
        try:
            yield
        finally:
            with online_db.open("r+b") as f:
                f.write(good)
        return
    with online_redis_client() as client:
        pid = int(client.info("server")["process_id"])
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def test_online_store_unreadable_serving_answers_with_features_flagged_missing(
    stack: Stack,
) -> None:
    with Traffic(stack, sender=stack.known_sender) as traffic:
        wait_until(lambda: len(traffic.answers) >= 5, 15, "answers before the fault")
        assert traffic.answers[-1][2] is not None
        assert "sender_msgs_total" not in traffic.answers[-1][2]["missing_features"]
        broke_at = time.monotonic()
        with _online_store_broken(stack):
            wait_until(
                lambda: any(
                    t > broke_at and b and "sender_msgs_total" in b["missing_features"]
                    for t, _, b in traffic.answers
                ),
                20,
                "answers with the features flagged missing",
            )
            readyz = httpx.get(f"{stack.serving_url}/readyz", timeout=5).json()
            time.sleep(1.0)
        fixed_at = time.monotonic()

        def reads_again() -> bool:
            last = [b for t, _, b in traffic.answers if t > fixed_at and b]
            return bool(last) and "sender_msgs_total" not in last[-1]["missing_features"]

        wait_until(reads_again, 20, "the online features read again")
        recovered_s = time.monotonic() - fixed_at
    during = [b for t, _, b in traffic.answers if broke_at < t <= fixed_at and b]
    flagged = [b for b in during if "sender_msgs_total" in b["missing_features"]]
    stack.costs["online store unreadable"] = traffic.cost(
        fixed_at - broke_at,
        0,
        recovered_s,
        answers_with_features_missing=len(flagged),
        readyz_while_down=readyz,
    )
    assert traffic.errors() == []
    # every feature the model uses is flagged, not only the sender's: the read failed as a whole
    assert flagged and all(set(b["features_used"]) == set(b["missing_features"]) for b in flagged)
    assert readyz["ready"] is True and "feature_store" in readyz["degraded"]
