"""The project image run as it would be deployed: serving and ingestion started from it (non-root,
read-only root filesystem, no capabilities) against the session's real Tansu broker and MLflow
server, one message through each. `make test-container` runs it in the scale profile
(MODSTACK_PROFILE=scale): Tansu on the S3 server, MLflow on PostgreSQL with artifacts in S3,
Feast's registry and offline store in PostgreSQL, Redis online, as at cluster scale; the
containers get the module's stores through the same variables the deployment sets.

The image is built on a debootstrap base standing in for python:3.11-slim, on a private dockerd
with host networking: no image registry and no bridge network here (tests/container/conftest.py
says more). Serving follows a champion registered for this module (SERVING_MODEL_PREFIX) that
reads the Feast FeatureService, so the container reads the registry and the online store (in
/data locally, in PostgreSQL and Redis in the scale profile).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from kafka import KafkaConsumer, TopicPartition

from modstack.names import ALIAS_CHAMPION, FEATURE_SERVICE_V1, TOPIC_MESSAGES
from modstack.waits import free_port
from tests.container.conftest import BuiltImage
from tests.support.docker import REPO_ROOT, running_container
from tests.support.profile import store_environment
from tests.support.serving_stack import log_small_model, training_frame

# the first test's set-up builds the image: debootstrap and the dependency layer take minutes
# on a fresh clone (pytest's default 300 s covers a warm run only)
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1_500)]

PREFIX = f"container-{uuid.uuid4().hex[:8]}-"
ACTIONS = {"allow", "review", "block"}


def _message(sender: str) -> dict[str, str]:
    return {
        "message_id": f"container-{uuid.uuid4().hex[:12]}",
        "sender_id": sender,
        "subject": "lunch",
        "body": "see you at noon in the usual place",
        "sent_at": "2002-09-01T10:00:00+00:00",
    }


def _values_on_topic(bootstrap: str, topic: str, message_id: str) -> list[dict[str, object]]:
    """The JSON values on `topic` (read to its end) whose message_id is `message_id`."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        found: list[dict[str, object]] = []
        deadline = time.monotonic() + 20
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            assert time.monotonic() < deadline, f"{topic} not read to its end within 20 s"
            for records in consumer.poll(timeout_ms=500).values():
                values = (json.loads(r.value) for r in records)
                found.extend(v for v in values if v.get("message_id") == message_id)
        return found
    finally:
        consumer.close()


@pytest.fixture(scope="module")
def ingestion(
    project_image: BuiltImage, kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """`python -m services.ingestion` from the image; its address."""
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with running_container(
        project_image.docker,
        f"{PREFIX}ingestion",
        project_image.tag,
        ["python", "-m", "services.ingestion"],
        env={
            "INGESTION_ADDR": url,
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            **store_environment(),
        },
        data_dir=tmp_path_factory.mktemp("ingestion-data"),
        ready_url=f"{url}/readyz",
    ):
        project_image.seconds["ingestion_start_s"] = time.monotonic() - started
        yield url


@pytest.fixture(scope="module")
def champion_data(tmp_path_factory: pytest.TempPathFactory, mlflow_tracking_uri: str) -> Path:
    """A data dir with the Feast repo applied (the profile's registry and online store), and a
    small champion registered as `<PREFIX>spam-classifier` that reads the FeatureService."""
    from mlflow import MlflowClient

    from features.store import apply_repo, feature_columns, get_store

    data_dir = tmp_path_factory.mktemp("serving-data")
    apply_repo(REPO_ROOT / "features", data_dir)
    columns = feature_columns(get_store(REPO_ROOT / "features", data_dir), FEATURE_SERVICE_V1)
    name = f"{PREFIX}spam-classifier"
    version = log_small_model(name, training_frame(data_dir, columns), columns, seed=1)
    MlflowClient(mlflow_tracking_uri).set_registered_model_alias(name, ALIAS_CHAMPION, version)
    return data_dir


@pytest.fixture(scope="module")
def serving(
    project_image: BuiltImage, champion_data: Path, kafka_bootstrap: str, mlflow_tracking_uri: str
) -> Iterator[str]:
    """`python -m services.serving` (the image's default command) with the champion loaded."""
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with running_container(
        project_image.docker,
        f"{PREFIX}serving",
        project_image.tag,
        [],
        env={
            "SERVING_ADDR": url,
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "MLFLOW_TRACKING_URI": mlflow_tracking_uri,
            "SERVING_MODEL_PREFIX": PREFIX,
            "SERVING_POLICIES": "spam",
            "SERVING_WORKERS": "1",
            **store_environment(),
        },
        data_dir=champion_data,
        ready_url=f"{url}/readyz",
    ):
        project_image.seconds["serving_start_s"] = time.monotonic() - started
        yield url


def test_ingestion_from_the_image_puts_an_accepted_message_on_the_topic(
    ingestion: str, kafka_bootstrap: str
) -> None:
    message = _message("alice@example.com")
    response = httpx.post(f"{ingestion}/v1/messages", json=message, timeout=30)
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": [message["message_id"]], "duplicates": []}
    [event] = _values_on_topic(kafka_bootstrap, TOPIC_MESSAGES, message["message_id"])
    assert event["sender_id"] == "alice@example.com"


def test_serving_from_the_image_moderates_a_message_with_the_champion(serving: str) -> None:
    response = httpx.post(f"{serving}/v1/moderate", json=_message("bob@example.org"), timeout=30)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["action"] in ACTIONS
    spam = answer["policies"]["spam"]
    assert spam["variant"] == "champion"
    assert spam["features_used"], "the champion reads the FeatureService through Feast"
