"""The canary controller against the real pieces: MLflow registry (aliases + rollout tags), Tansu
(predictions and labels for the paired label checks), Feast (SQLite), the real serving process
and a real Prometheus. Every rollout pairs: the variant that does not answer scores the same
message in the shadow. A challenger that blocks far more than the champion but is right on the
labels is promoted; a model that learned nothing (scores at the prior, what shuffled labels
teach) is rolled back on its own within a bounded number of intervals, with either metrics
source; admin actions need the token.

The models are small TF-IDF + logistic regressions on synthetic mail, registered under the model
contract, so the test spends its time on the rollout, not on training.
"""

from __future__ import annotations

import random
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import mlflow
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.dummy import DummyClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from modstack.events import LabelEvent
from modstack.kafka import make_producer
from modstack.names import (
    ALIAS_CHALLENGER,
    ALIAS_CHAMPION,
    FEATURE_SERVICE_V1,
    REGISTERED_MODEL,
    TOPIC_LABELS,
)
from modstack.processes import BackgroundProcess, http_ok
from modstack.registry.aliases import clear_challenger, get_alias_version, get_client
from modstack.registry.contract import META_FEATURE_COLUMNS, META_FEATURE_SERVICE, META_THRESHOLDS
from modstack.registry.expectation import expectation_from_scores, log_expectation
from modstack.registry.rollout import RolloutState, RolloutStore
from modstack.waits import free_port, wait_until
from tests.support.prometheus import running_prometheus

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TOKEN = "canary-test-token"
INTERVAL_S = 4.0
SERVING_POLL_INTERVAL_S = 1.0
FAILURE_LIMIT = 2
STEPS = "50,100"
LABELLED_SHARE = 0.5
SPAM_WORDS = [
    "free",
    "money",
    "winner",
    "cash",
    "prize",
    "click",
    "offer",
    "credit",
    "urgent",
    "deal",
]
HAM_WORDS = [
    "meeting",
    "project",
    "report",
    "lunch",
    "schedule",
    "team",
    "review",
    "code",
    "notes",
    "thanks",
]


def synthetic_mail(rng: random.Random, min_spam_words: int = 5) -> tuple[str, str, str]:
    """(subject, body, label): a mix of spam and ham words, spam from `min_spam_words` of 9
    (the truth is the majority, 5; a stricter rule is a model that learned too little spam)."""
    spam_share = rng.random()
    words = [rng.choice(SPAM_WORDS if rng.random() < spam_share else HAM_WORDS) for _ in range(9)]
    spam = sum(w in SPAM_WORDS for w in words) >= min_spam_words
    return " ".join(words[:3]), " ".join(words), "spam" if spam else "ham"


def register(classifier, seed: int, columns: list[str], min_spam_words: int = 5) -> str:
    """Fit a text pipeline on synthetic mail, log its offline expectation, register it under
    the model contract."""
    import pandas as pd

    rng = random.Random(seed)
    rows = [synthetic_mail(rng, min_spam_words) for _ in range(400)]
    frame = pd.DataFrame(rows, columns=["subject", "body", "label"])
    for column in columns:
        frame[column] = float("nan")
    pipeline = Pipeline(
        [
            ("text", ColumnTransformer([("body", TfidfVectorizer(), "body")])),
            ("classifier", classifier),
        ]
    )
    pipeline.fit(frame.drop(columns="label"), frame["label"] == "spam")
    holdout_rng = random.Random(seed + 100)
    holdout = pd.DataFrame(
        [synthetic_mail(holdout_rng) for _ in range(400)],
        columns=["subject", "body", "label"],
    )
    for column in columns:
        holdout[column] = float("nan")
    scores = pipeline.predict_proba(holdout.drop(columns="label"))[:, 1]
    with mlflow.start_run():
        log_expectation(expectation_from_scores(scores, block=0.8, review=0.5))
        info = mlflow.sklearn.log_model(
            pipeline,
            name="model",
            serialization_format="cloudpickle",
            pip_requirements=["scikit-learn"],  # skips MLflow's slow requirement inference
            registered_model_name=REGISTERED_MODEL,
            metadata={
                META_THRESHOLDS: {"block": 0.8, "review": 0.5},
                META_FEATURE_SERVICE: FEATURE_SERVICE_V1,
                META_FEATURE_COLUMNS: columns,
            },
        )
    return str(info.registered_model_version)


@dataclass
class Stack:
    data_dir: Path
    serving_url: str
    mlflow_uri: str
    kafka: str
    versions: dict[str, str]
    env: dict[str, str] = field(default_factory=dict)


@pytest.fixture(scope="module")
def stack(tmp_path_factory, kafka_bootstrap, mlflow_tracking_uri) -> Iterator[Stack]:
    from features.store import apply_repo, feature_columns, get_store

    root: Path = tmp_path_factory.mktemp("canary-stack")
    data_dir = root / "data"
    apply_repo(REPO / "features", data_dir)
    columns = feature_columns(get_store(REPO / "features", data_dir), FEATURE_SERVICE_V1)
    mlflow.set_experiment("canary-test")
    versions = {
        # learned spam as "7 of 9 spam words": blocks far less than there is spam
        "champion": register(LogisticRegression(C=5.0), seed=1, columns=columns, min_spam_words=7),
        # learned the truth: blocks ~20 points more than the champion, and is right to
        "good": register(LogisticRegression(C=5.0), seed=2, columns=columns),
        # scores every mail with the training spam rate: what shuffled labels teach
        "bad": register(DummyClassifier(strategy="prior"), seed=3, columns=columns),
    }
    client = get_client(mlflow_tracking_uri)
    # The MLflow server is shared by the whole test session: start from a clean registry state
    # and put the aliases back afterwards.
    champion_before = get_alias_version(ALIAS_CHAMPION, client)
    clear_challenger(client)
    RolloutStore(client).save(RolloutState())
    client.set_registered_model_alias(REGISTERED_MODEL, ALIAS_CHAMPION, versions["champion"])
    port = free_port()
    env = {
        "MLFLOW_TRACKING_URI": mlflow_tracking_uri,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "DATA_DIR": str(data_dir),
        "RUN_DIR": str(root / "run"),
        "FEAST_REPO_PATH": str(REPO / "features"),
        "ADMIN_TOKEN": TOKEN,
        "SERVING_ADDR": f"http://127.0.0.1:{port}",
        "SERVING_POLL_INTERVAL_S": str(SERVING_POLL_INTERVAL_S),
        "SERVING_POLICIES": "spam",
        # No load shedding: these tests judge rollout decisions, and their two light clients
        # were shed (estimated waits 338-661 ms) on a machine running both test profiles at
        # once. Shedding has its own tests (test_serving.py, the batcher's unit tests).
        "SERVING_LATENCY_BUDGET_MS": "0",
    }
    serving_url = env["SERVING_ADDR"]
    with BackgroundProcess(
        "serving",
        [sys.executable, "-m", "services.serving"],
        root / "serving.log",
        ready=lambda: http_ok(f"{serving_url}/healthz"),
        timeout_s=120,
        env=env,
        cwd=REPO,
    ):
        yield Stack(data_dir, serving_url, mlflow_tracking_uri, kafka_bootstrap, versions, env)
    clear_challenger(client)
    RolloutStore(client).save(RolloutState())
    if champion_before is None:
        client.delete_registered_model_alias(REGISTERED_MODEL, ALIAS_CHAMPION)
    else:
        client.set_registered_model_alias(REGISTERED_MODEL, ALIAS_CHAMPION, champion_before)


class Traffic:
    """Moderation requests from 400 senders at ~40/s; half the mail gets its true label on
    labels.v1 right away (user reports, compressed in time)."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.stop_event = threading.Event()
        self.answered: dict[str, int] = {"champion": 0, "challenger": 0}
        # answers by variant: [not blocked, blocked]
        self.actions: dict[str, list[int]] = {"champion": [0, 0], "challenger": [0, 0]}
        self.failures = 0
        self.failure_reasons: list[str] = []
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in (0, 1)]

    def _run(self, seed: int) -> None:
        rng = random.Random(seed)
        producer = make_producer(self.stack.kafka)
        with httpx.Client(base_url=self.stack.serving_url, timeout=10) as http:
            while not self.stop_event.is_set():
                subject, body, label = synthetic_mail(rng)
                sender = f"user{rng.randrange(400)}@example.com"
                message_id = uuid.uuid4().hex
                now = datetime.now(UTC)
                try:
                    response = http.post(
                        "/v1/moderate",
                        json={
                            "message_id": message_id,
                            "sender_id": sender,
                            "subject": subject,
                            "body": body,
                            "sent_at": now.isoformat(),
                        },
                    )
                except httpx.HTTPError as exc:
                    self.failures += 1
                    self.failure_reasons.append(f"{type(exc).__name__}: {exc}")
                    continue
                if response.status_code != 200:
                    self.failures += 1
                    self.failure_reasons.append(
                        f"HTTP {response.status_code}: {response.text[:200]}"
                    )
                else:
                    answer = response.json()["policies"]["spam"]
                    self.answered[answer["variant"]] += 1
                    self.actions[answer["variant"]][answer["action"] == "block"] += 1
                    if rng.random() < LABELLED_SHARE:
                        event = LabelEvent(
                            message_id=message_id,
                            sender_id=sender,
                            label=label,
                            source="user_report",
                            labeled_at=now,
                            received_at=now,
                        )
                        producer.send(TOPIC_LABELS, key=sender, value=event.to_bytes())
                self.stop_event.wait(0.05)
        producer.close(timeout=5)

    def __enter__(self) -> Traffic:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout=15)


def canary_process(stack: Stack, root: Path, **extra: str) -> BackgroundProcess:
    port = free_port()
    env = {
        **stack.env,
        "CANARY_ADDR": f"http://127.0.0.1:{port}",
        "CANARY_STEPS": STEPS,
        "CANARY_INTERVAL_S": str(INTERVAL_S),
        "CANARY_TICK_S": "1.0",
        "CANARY_MIN_REQUESTS": "50",
        "CANARY_FAILURE_LIMIT": str(FAILURE_LIMIT),
        "CANARY_MAX_EXTENSIONS": "3",
        "CANARY_MIN_LABELLED_BLOCKS": "5",
        "CANARY_MIN_DISCORDANT": "10",
        # the machine is shared with other test processes: latency is compared, not judged
        # to the millisecond
        "CANARY_LATENCY_P99_SLACK_S": "0.5",
        **extra,
    }
    process = BackgroundProcess(
        "canary",
        [sys.executable, "-m", "services.canary"],
        root / f"canary-{port}.log",
        # /readyz reads the registry: the controller's MLflow client is warm once it answers
        ready=lambda: http_ok(f"http://127.0.0.1:{port}/readyz"),
        timeout_s=60,
        env=env,
        cwd=REPO,
    )
    process.url = env["CANARY_ADDR"]  # type: ignore[attr-defined]
    return process


def admin(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {TOKEN}"})


def follow_until_done(client: httpx.Client, timeout_s: float) -> dict:
    """Poll the rollout until it is promoted or rolled back (bounded)."""
    final: dict = {}

    def done() -> bool:
        final.update(client.get("/v1/rollout").json())
        return final["status"] in ("promoted", "rolled_back")

    wait_until(
        done,
        timeout_s,
        "the rollout to finish",
        interval_s=0.5,
        detail=lambda: f"last state: {final}",
    )
    return final


def decisions(state: dict) -> list[str]:
    """The rollout's decisions, without extensions: a window with too little evidence (a busy
    machine serves fewer requests per window) is extended, which is the controller doing its
    job; each test's bound on the time to the decision still holds."""
    return [e["action"] for e in state["history"] if e["action"] != "extend"]


def decision_seconds(state: dict) -> float:
    """Seconds from the rollout's start to its final decision, by the history's timestamps."""
    first, last = state["history"][0]["at"], state["history"][-1]["at"]
    return (datetime.fromisoformat(last) - datetime.fromisoformat(first)).total_seconds()


@pytest.fixture
def canary(stack: Stack, tmp_path: Path) -> Iterator[str]:
    with canary_process(stack, tmp_path) as process:
        yield process.url


def test_rollout_endpoints_answer_401_without_the_token_and_403_with_a_wrong_one(canary):
    for method, path in [
        ("GET", "/v1/rollout"),
        ("POST", "/v1/rollout/start"),
        ("POST", "/v1/rollout/abort"),
        ("POST", "/v1/rollout/pause"),
    ]:
        anonymous = httpx.request(method, f"{canary}{path}", timeout=10)
        wrong = httpx.request(
            method, f"{canary}{path}", timeout=10, headers={"Authorization": "Bearer nope"}
        )
        assert anonymous.status_code == 401, (method, path)
        assert wrong.status_code == 403, (method, path)
    assert httpx.get(f"{canary}/healthz", timeout=10).status_code == 200
    assert "canary_weight_percent" in httpx.get(f"{canary}/metrics", timeout=10).text


def test_a_good_challenger_is_promoted_step_by_step(stack, canary):
    client = get_client(stack.mlflow_uri)
    with admin(canary) as http, Traffic(stack) as traffic:
        start = http.post("/v1/rollout/start", json={"challenger_version": stack.versions["good"]})
        assert start.status_code == 200, start.text
        state = follow_until_done(http, timeout_s=INTERVAL_S * 15)
    elapsed = decision_seconds(state)
    print(f"\npromoted in {elapsed:.1f} s; answered {traffic.answered}")
    assert state["status"] == "promoted", state["reason"]
    assert decisions(state) == ["start", "advance", "promote"]
    # two steps of INTERVAL_S, plus the challenger's load time in serving
    assert elapsed < INTERVAL_S * 5
    promote = state["history"][-1]
    checks = promote["checks"]
    decisive = {n: c for n, c in checks.items() if c["kind"] != "report"}
    assert {c["verdict"] for c in decisive.values()} == {"pass"}, decisive
    # it blocks far more than the champion on the same messages, and the labels agree with it
    assert checks["block_rate"]["challenger"] - checks["block_rate"]["champion"] > 0.15
    assert checks["label_mcnemar"]["challenger"] > checks["label_mcnemar"]["champion"]
    assert checks["label_mcnemar"]["challenger"] >= 10
    assert traffic.answered["challenger"] > 0
    assert traffic.failures == 0, traffic.failure_reasons
    print(f"checks at promotion: { {n: c['value'] for n, c in checks.items()} }")
    assert get_alias_version(ALIAS_CHAMPION, client) == stack.versions["good"]
    assert get_alias_version(ALIAS_CHALLENGER, client) is None
    assert (
        client.get_registered_model(REGISTERED_MODEL).tags["previous_champion"]
        == (stack.versions["champion"])
    )

    # serving follows within a poll: then every answer comes from the new champion
    def promoted_in_serving() -> bool:
        health = httpx.get(f"{stack.serving_url}/healthz", timeout=5).json()["policies"]["spam"]
        return health["champion"] == stack.versions["good"] and health["challenger"] is None

    wait_until(promoted_in_serving, 10, "serving to load the new champion")
    # /healthz answers from one worker; every worker polls the registry on its own, so the
    # guarantee is "all of them within one poll interval" (SERVING_POLL_INTERVAL_S above)
    time.sleep(SERVING_POLL_INTERVAL_S * 2 + 1)
    answers = [
        httpx.post(
            f"{stack.serving_url}/v1/moderate",
            json={
                "message_id": f"after-promotion-{i}",
                "sender_id": "x@example.com",
                "subject": "hi",
                "body": "team meeting notes",
                "sent_at": datetime.now(UTC).isoformat(),
            },
            timeout=10,
        ).json()["policies"]["spam"]
        for i in range(20)
    ]
    assert {(a["variant"], a["model_version"]) for a in answers} == {
        ("champion", stack.versions["good"])
    }


def _bad_rollout(stack: Stack, canary_url: str) -> tuple[dict, float]:
    client = get_client(stack.mlflow_uri)
    champion = get_alias_version(ALIAS_CHAMPION, client)
    with admin(canary_url) as http, Traffic(stack):
        start = http.post("/v1/rollout/start", json={"challenger_version": stack.versions["bad"]})
        assert start.status_code == 200, start.text
        state = follow_until_done(http, timeout_s=INTERVAL_S * 15)
    elapsed = decision_seconds(state)
    assert state["status"] == "rolled_back", state["reason"]
    assert state["weight_percent"] == 0
    assert get_alias_version(ALIAS_CHALLENGER, client) is None
    assert get_alias_version(ALIAS_CHAMPION, client) == champion
    # bounded: the failure limit's worth of windows (plus start-up slack), no more
    assert decisions(state) == ["start", "analysis_failed", "rollback"]
    assert elapsed < INTERVAL_S * (FAILURE_LIMIT + 2)  # slack: challenger load, slow windows
    rollback = state["history"][-1]
    failed = {name for name, c in rollback["checks"].items() if c["verdict"] == "fail"}
    # the labels side with the champion, and the scores collapsed onto the prior
    assert {"label_mcnemar", "score_collapse"} <= failed
    assert rollback["checks"]["label_mcnemar"]["value"] < 0.01
    assert rollback["checks"]["block_rate"]["challenger"] == 0.0
    print(f"\nrolled back in {elapsed:.1f} s: {state['reason']}")
    return state, elapsed


def test_a_bad_challenger_is_rolled_back_automatically(stack, canary):
    _bad_rollout(stack, canary)
    metrics = httpx.get(f"{canary}/metrics", timeout=10).text
    assert "canary_rollbacks_total 1.0" in metrics
    assert 'canary_check_failures_total{check="score_collapse"} 2.0' in metrics
    assert (
        'canary_check_verdict{check="label_mcnemar",kind="quality",verdict="fail"} 1.0' in metrics
    )
    assert 'canary_check_value{check="label_mcnemar"}' in metrics
    assert 'canary_status_info{status="rolled_back"} 1.0' in metrics


@pytest.fixture
def prometheus_scraping_serving(stack: Stack, tmp_path: Path) -> Iterator[str]:
    target = stack.serving_url.removeprefix("http://")
    config = (
        "global: {scrape_interval: 1s}\n"
        f"scrape_configs: [{{job_name: serving, static_configs: [{{targets: ['{target}']}}]}}]\n"
    )
    with running_prometheus(tmp_path, config) as url:
        yield url


def test_a_bad_challenger_is_rolled_back_with_metrics_from_prometheus(
    stack, tmp_path, prometheus_scraping_serving
):
    with canary_process(
        stack,
        tmp_path,
        PROMETHEUS_URL=prometheus_scraping_serving,
        CANARY_PROMETHEUS_MIN_WINDOW_S="2.5",  # Prometheus scrapes every second here
    ) as process:
        state, _ = _bad_rollout(stack, process.url)
        status = admin(process.url).get("/v1/rollout").json()
    assert status["metrics_source"] == "PrometheusSource"
    assert state["history"][-1]["metrics"]["challenger_requests"] > 0


def test_pause_resume_and_abort_from_the_admin_api(stack, canary):
    client = get_client(stack.mlflow_uri)
    with admin(canary) as http:
        started = http.post(
            "/v1/rollout/start", json={"challenger_version": stack.versions["bad"], "actor": "test"}
        )
        assert started.json()["status"] == "progressing"
        assert http.post("/v1/rollout/start", json={}).status_code == 409  # one at a time
        paused = http.post("/v1/rollout/pause", json={"reason": "investigating", "actor": "test"})
        assert paused.json()["status"] == "paused" and paused.json()["weight_percent"] == 50
        assert http.post("/v1/rollout/pause", json={}).status_code == 409
        assert http.post("/v1/rollout/resume", json={"actor": "test"}).json()["status"] == (
            "progressing"
        )
        aborted = http.post("/v1/rollout/abort", json={"reason": "manual stop", "actor": "test"})
        assert aborted.json()["status"] == "rolled_back"
        assert aborted.json()["reason"] == "manual stop"
        state = http.get("/v1/rollout").json()
    assert decisions(state) == ["start", "pause", "resume", "abort"]
    assert {e["actor"] for e in state["history"]} == {"test"}
    assert get_alias_version(ALIAS_CHALLENGER, client) is None
    # every replica reads the same state from the registry
    assert RolloutStore(client).load().status == "rolled_back"
