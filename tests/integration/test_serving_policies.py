"""Serving with two policies, each with its own registered model and rollout: one request is
scored by both (in the same micro-batches), the answer's action is the more severe one, each
policy's decision is its own prediction event, and one policy's canary moves that policy's
traffic only.

The replica follows models of its own (SERVING_MODEL_PREFIX): `<prefix>spam-classifier` reads
the Feast FeatureService; `<prefix>abuse-classifier` reads the text alone (no feature service).
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest

from modstack.names import ALIAS_CHALLENGER, ALIAS_CHAMPION, FEATURE_SERVICE_V1, TOPIC_PREDICTIONS
from modstack.processes import BackgroundProcess, http_ok
from modstack.registry.rollout import RolloutState, RolloutStore
from modstack.waits import free_port, wait_until
from tests.support.serving_stack import log_small_model, training_frame

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PREFIX = f"policies-{uuid.uuid4().hex[:8]}-"
SEVERITY = {"allow": 0, "review": 1, "block": 2}
# words that make the small abuse model's positives (its target is a keyword rule on the
# fixture's text: what matters here is routing and the contract, not the model)
ABUSIVE = ("idiot", "stupid", "loser")


def _abusive(frame: pd.DataFrame) -> pd.Series:
    text = (frame["subject"].fillna("") + " " + frame["body"].fillna("")).str.lower()
    return text.str.contains("|".join(ABUSIVE)) | (frame.index % 4 == 0)


class Served:
    """Versions registered for the test, and the running replica."""

    def __init__(self, url: str, kafka: str, versions: dict[str, dict[str, str]]) -> None:
        self.url = url
        self.kafka = kafka
        self.versions = versions
        self.http = httpx.Client(base_url=url, timeout=30)


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str, mlflow_tracking_uri: str
) -> Iterator[Served]:
    from mlflow import MlflowClient

    from features.store import apply_repo, feature_columns, get_store

    data_dir = tmp_path_factory.mktemp("policies-data")
    apply_repo(ROOT / "features", data_dir)
    columns = feature_columns(get_store(ROOT / "features", data_dir), FEATURE_SERVICE_V1)
    frame = training_frame(data_dir, columns)
    client = MlflowClient(mlflow_tracking_uri)
    versions: dict[str, dict[str, str]] = {}
    for policy, cols, target in (("spam", columns, None), ("abuse", [], _abusive(frame))):
        name = f"{PREFIX}{policy}-classifier"
        champion = log_small_model(name, frame, cols, seed=1, positive=target)
        half = frame.sample(frac=0.6, random_state=3)
        half_target = target.loc[half.index] if target is not None else None
        challenger = log_small_model(name, half, cols, seed=2, positive=half_target)
        client.set_registered_model_alias(name, ALIAS_CHAMPION, champion)
        client.set_registered_model_alias(name, ALIAS_CHALLENGER, challenger)
        versions[policy] = {"champion": champion, "challenger": challenger}
    url = f"http://127.0.0.1:{free_port()}"
    env = {
        "DATA_DIR": str(data_dir),
        "RUN_DIR": str(data_dir / "run"),
        "FEAST_REPO_PATH": str(ROOT / "features"),
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "MLFLOW_TRACKING_URI": mlflow_tracking_uri,
        "SERVING_ADDR": url,
        "SERVING_MODEL_PREFIX": PREFIX,
        "SERVING_WORKERS": "1",
        "SERVING_POLL_INTERVAL_S": "0.5",
    }
    log = data_dir / "serving.log"
    with BackgroundProcess(
        "serving",
        [sys.executable, "-m", "services.serving"],
        log,
        ready=lambda: http_ok(f"{url}/readyz"),
        timeout_s=90,
        env=env,
        cwd=ROOT,
    ):
        wait_until(
            lambda: len(httpx.get(f"{url}/readyz", timeout=5).json().get("champions", {})) == 2,
            30,
            "both policies' champions loaded",
        )
        yield Served(url, kafka_bootstrap, versions)


def _message(i: int, body: str = "see you at the meeting tomorrow") -> dict[str, str]:
    return {
        "message_id": f"pol-{uuid.uuid4().hex[:10]}-{i}",
        "sender_id": f"user{i}@example.org",
        "subject": "",
        "body": body,
        "sent_at": "2002-09-01T10:00:00+00:00",
    }


def test_every_policy_scores_every_request_and_the_most_severe_action_wins(
    served: Served,
) -> None:
    bodies = ["see you at the meeting", "you stupid idiot loser", "FREE money click now"]
    for i, body in enumerate(bodies * 5):
        response = served.http.post("/v1/moderate", json=_message(i, body))
        assert response.status_code == 200, response.text
        answer = response.json()
        assert set(answer["policies"]) == {"spam", "abuse"}
        actions = [d["action"] for d in answer["policies"].values()]
        assert answer["action"] == max(actions, key=SEVERITY.__getitem__)
        spam, abuse = answer["policies"]["spam"], answer["policies"]["abuse"]
        assert spam["model_version"] == served.versions["spam"]["champion"]
        assert abuse["model_version"] == served.versions["abuse"]["champion"]
        assert spam["features_used"] and abuse["features_used"] == []
        assert abuse["missing_features"] == []


def test_each_policy_decision_is_its_own_prediction_event(served: Served) -> None:
    from kafka import KafkaConsumer, TopicPartition

    sent = [_message(i) for i in range(5)]
    for message in sent:
        assert served.http.post("/v1/moderate", json=message).status_code == 200
    wanted = {m["message_id"] for m in sent}
    consumer = KafkaConsumer(bootstrap_servers=served.kafka, enable_auto_commit=False)
    try:
        partitions = [
            TopicPartition(TOPIC_PREDICTIONS, p)
            for p in consumer.partitions_for_topic(TOPIC_PREDICTIONS) or ()
        ]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        seen: set[tuple[str, str]] = set()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(seen) < 2 * len(wanted):
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    event = json.loads(record.value)
                    if event["message_id"] in wanted and event["served"]:
                        seen.add((event["message_id"], event["policy"]))
    finally:
        consumer.close()
    assert seen == {(m, p) for m in wanted for p in ("spam", "abuse")}


def test_one_policys_canary_moves_that_policys_traffic_only(
    served: Served, mlflow_tracking_uri: str
) -> None:
    from mlflow import MlflowClient

    store = RolloutStore(MlflowClient(mlflow_tracking_uri), f"{PREFIX}abuse-classifier")
    abuse = served.versions["abuse"]
    store.save(
        RolloutState(
            rollout_id="abuse-canary",
            challenger_version=abuse["challenger"],
            champion_version=abuse["champion"],
            weight_percent=100.0,
            mode="canary",
            status="progressing",
        )
    )

    def abuse_follows() -> bool:
        health = served.http.get("/healthz").json()["policies"]
        return (health["abuse"]["rollout"] or {}).get("status") == "progressing"

    wait_until(abuse_follows, 15, "serving to follow the abuse rollout")
    for i in range(10):
        answer = served.http.post("/v1/moderate", json=_message(100 + i)).json()["policies"]
        assert answer["abuse"]["variant"] == "challenger"
        assert answer["abuse"]["model_version"] == abuse["challenger"]
        assert answer["spam"]["variant"] == "champion"  # no spam rollout: untouched
    health = served.http.get("/healthz").json()["policies"]
    assert health["spam"]["rollout"] is None
