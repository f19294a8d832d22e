"""Traffic against the running stack, weighted like a messaging platform's:
mostly moderation calls, some user spam reports to ingestion, a few malformed requests.

Texts come from the held-out future period of the corpus (`python -m pipelines.data` builds it),
so the full path runs on real mail: Feast features, canary routing, prediction logging.
Run `make loadtest` (headless, bounded time), or `locust -f loadtests/locustfile.py` for the UI.
Knobs: LOADTEST_USERS, LOADTEST_SPAWN_RATE, LOADTEST_RUN_TIME (Makefile), SERVING_ADDR,
INGESTION_ADDR, DATA_DIR, LOADTEST_CLIENT_KEY (ingestion's client key for reports), and the
task weights LOADTEST_WEIGHT_{MODERATE,REPORT,BAD}.
"""

from __future__ import annotations

import json
import os
import random
import uuid
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import httpx
from locust import FastHttpUser, between, events, task
from locust.env import Environment

from modstack.settings import get_settings


@lru_cache(maxsize=1)
def future_messages() -> list[dict[str, Any]]:
    """Messages of the future period as request bodies (loaded once per locust process)."""
    from modstack.corpus import load_corpus

    corpus = load_corpus(get_settings().data_dir)
    future = corpus[(corpus["period"] == "future") & ~corpus["is_duplicate"]]
    if future.empty:
        raise RuntimeError("the corpus has no future-period mail: run `python -m pipelines.data`")
    return [
        {
            "message_id": str(row.message_id),
            "sender_id": str(row.sender_id),
            "subject": str(row.subject)[:1_000],
            "body": str(row.body),
            "sent_at": row.sent_at.isoformat(),
            "label": str(row.label),
        }
        for row in future.itertuples(index=False)
    ]


@events.init.add_listener
def _require_ready_stack(environment: Environment, **_: Any) -> None:
    """Refuse to start against a serving API that is not ready: every request would fail."""
    host = (environment.host or PlatformUser.host).rstrip("/")
    try:
        response = httpx.get(f"{host}/readyz", timeout=5.0)
        ready, why = response.status_code == 200, response.text[:300]
    except httpx.HTTPError as exc:
        ready, why = False, f"{type(exc).__name__}: {exc}"
    if not ready:
        raise SystemExit(
            f"serving at {host} is not ready ({why}); start the stack with `make up` and train "
            "a champion (`make train`) first, or point SERVING_ADDR / --host at it"
        )


def serving_cpu_seconds(host: str) -> float | None:
    """User + system CPU seconds of the serving processes (the uvicorn supervisor and every
    worker), read with psutil; None when serving is not a local process."""
    from urllib.parse import urlparse

    from loadtests.bench.serving_cpu import listening_pids, process_tree_cpu

    port = urlparse(host).port
    pids = listening_pids(port) if port else []
    return process_tree_cpu(pids) if pids else None


_cpu_at_start: dict[str, float] = {}


@events.test_start.add_listener
def _record_serving_cpu(environment: Environment, **_: Any) -> None:
    cpu = serving_cpu_seconds((environment.host or PlatformUser.host).rstrip("/"))
    if cpu is not None:
        _cpu_at_start["cpu"] = cpu


@events.test_stop.add_listener
def _report_serving_cpu(environment: Environment, **_: Any) -> None:
    """CPU the serving process spent per request it answered: the service's cost, nearly
    independent of other work on the machine (unlike latency)."""
    cpu = serving_cpu_seconds((environment.host or PlatformUser.host).rstrip("/"))
    if cpu is None or "cpu" not in _cpu_at_start:
        return
    served = sum(
        environment.stats.get(name, "POST").num_requests for name in ("moderate", "bad payload")
    )
    if not served:
        return
    result = {"serving_cpu_seconds": cpu - _cpu_at_start["cpu"], "requests": served}
    result["cpu_ms_per_request"] = 1000 * result["serving_cpu_seconds"] / served
    print(f"serving CPU: {result['cpu_ms_per_request']:.1f} ms per request ({served} requests)")
    prefix = getattr(environment.parsed_options, "csv_prefix", None)
    if prefix:
        Path(f"{prefix}_serving_cpu.json").write_text(json.dumps(result))


def _client_key() -> str:
    """LOADTEST_CLIENT_KEY, else the first key ingestion accepts (INGESTION_CLIENT_KEYS)."""
    if os.environ.get("LOADTEST_CLIENT_KEY"):
        return os.environ["LOADTEST_CLIENT_KEY"]
    from services.ingestion.settings import IngestionSettings

    keys = IngestionSettings().ingestion_client_keys
    return next(iter(keys.values())).get_secret_value() if keys else ""


def _weight(name: str, default: int) -> int:
    return int(os.environ.get(f"LOADTEST_WEIGHT_{name}", default))


def _bad_payloads() -> list[tuple[str, Any]]:
    """(what is wrong, request body) pairs that serving must refuse with a 4xx."""
    good = {
        "message_id": "bad-1",
        "sender_id": "x@example.com",
        "subject": "s",
        "body": "b",
        "sent_at": "2002-09-01T00:00:00Z",
    }
    return [
        ("missing sent_at", {k: v for k, v in good.items() if k != "sent_at"}),
        ("empty message_id", {**good, "message_id": ""}),
        ("sent_at in the future", {**good, "sent_at": "2099-01-01T00:00:00Z"}),
        ("body is not a string", {**good, "body": ["not", "text"]}),
        ("unknown field", {**good, "priority": "high"}),
        ("not JSON", "this is not json"),
    ]


class PlatformUser(FastHttpUser):
    """One client of the platform; `host` is the serving API (SERVING_ADDR)."""

    host = get_settings().serving_addr
    wait_time = between(0.0, 0.05)

    def on_start(self) -> None:
        self.messages = future_messages()
        self.ingestion = get_settings().ingestion_addr.rstrip("/")
        self.client_auth = {"Authorization": f"Bearer {_client_key()}"}
        self.bad = _bad_payloads()

    def _pick(self) -> dict[str, Any]:
        message = dict(random.choice(self.messages))
        # a fresh id per request: each call is a new delivery of that mail's text
        message["message_id"] = f"{message['message_id']}~{uuid.uuid4().hex[:12]}"
        return message

    @task(_weight("MODERATE", 90))
    def moderate(self) -> None:
        message = self._pick()
        message.pop("label")
        self.client.post("/v1/moderate", json=message, name="moderate")

    @task(_weight("REPORT", 8))
    def report_spam(self) -> None:
        """A user report, as ingestion takes it: from a client app with its key, about a
        message the platform received from that sender (so the message is ingested first)."""
        message = self._pick()
        label = message.pop("label")
        self.client.post(
            f"{self.ingestion}/v1/messages", json=message, headers=self.client_auth,
            name="ingest message",
        )  # fmt: skip
        report = {
            "message_id": message["message_id"],
            "sender_id": message["sender_id"],
            "label": label,
            "source": "user_report",
            "reporter_id": f"loadtest-{uuid.uuid4().hex[:8]}",
            "labeled_at": datetime.now(UTC).isoformat(),
        }
        self.client.post(
            f"{self.ingestion}/v1/labels", json=report, headers=self.client_auth,
            name="report label",
        )  # fmt: skip

    @task(_weight("BAD", 2))
    def bad_payload(self) -> None:
        what, body = random.choice(self.bad)
        data = body if isinstance(body, str) else json.dumps(body)
        with self.client.post(
            "/v1/moderate",
            data=data,
            headers={"Content-Type": "application/json"},
            name="bad payload",
            catch_response=True,
        ) as response:
            # Success means "refused with a client error"; anything else is a failure.
            if 400 <= response.status_code < 500:
                response.success()
            else:
                response.failure(f"{what}: expected 4xx, got {response.status_code}")
