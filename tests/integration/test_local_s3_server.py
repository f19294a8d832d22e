"""The stack's local S3 server (stack/npm/s3-server.js on s3rver) from outside, with boto3: the
conditional writes Tansu's S3 storage relies on, and Tansu on it keeping every acknowledged
batch across restarts of the broker and of the server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from kafka import KafkaConsumer, TopicPartition

from modstack.kafka import ensure_topics, make_producer
from modstack.names import TOPIC_MESSAGES
from modstack.processes import S3_ACCESS_KEY, S3_REGION, S3_SECRET_KEY
from modstack.waits import free_port
from tests.support.processes import kill
from tests.support.s3 import S3Server, tansu_on_s3

pytestmark = [pytest.mark.integration, pytest.mark.backends_chosen]

BUCKET = "tansu"


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = S3Server.in_folder(tmp_path_factory.mktemp("s3")).start()
    try:
        yield server
    finally:
        server.stop()


def _client(s3: S3Server) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=s3.endpoint,
        aws_access_key_id=S3_ACCESS_KEY,
        aws_secret_access_key=S3_SECRET_KEY,
        region_name=S3_REGION,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


def _status(error: ClientError) -> int:
    return int(error.response["ResponseMetadata"]["HTTPStatusCode"])


def test_a_create_only_put_fails_when_the_object_exists(s3: S3Server) -> None:
    client = _client(s3)
    client.put_object(Bucket=BUCKET, Key="create/once.json", Body=b"1", IfNoneMatch="*")
    with pytest.raises(ClientError) as refused:
        client.put_object(Bucket=BUCKET, Key="create/once.json", Body=b"2", IfNoneMatch="*")
    assert _status(refused.value) == 412
    assert client.get_object(Bucket=BUCKET, Key="create/once.json")["Body"].read() == b"1"


def test_an_update_put_needs_the_current_etag(s3: S3Server) -> None:
    client = _client(s3)
    first = client.put_object(Bucket=BUCKET, Key="update/w.json", Body=b'{"high": 1}')
    second = client.put_object(
        Bucket=BUCKET, Key="update/w.json", Body=b'{"high": 2}', IfMatch=first["ETag"]
    )
    with pytest.raises(ClientError) as stale:  # a writer that read the first version
        client.put_object(
            Bucket=BUCKET, Key="update/w.json", Body=b'{"high": 9}', IfMatch=first["ETag"]
        )
    assert _status(stale.value) == 412
    with pytest.raises(ClientError) as missing:
        client.put_object(Bucket=BUCKET, Key="update/none.json", Body=b"x", IfMatch=first["ETag"])
    assert _status(missing.value) == 412
    body = client.get_object(Bucket=BUCKET, Key="update/w.json")["Body"].read()
    assert json.loads(body) == {"high": 2} and second["ETag"] != first["ETag"]


def test_plain_puts_and_reads_work_as_in_s3(s3: S3Server) -> None:
    client = _client(s3)
    client.put_object(Bucket=BUCKET, Key="plain/a.txt", Body=b"a")
    client.put_object(Bucket=BUCKET, Key="plain/a.txt", Body=b"b")
    listed = client.list_objects_v2(Bucket=BUCKET, Prefix="plain/")
    assert [o["Key"] for o in listed["Contents"]] == ["plain/a.txt"]
    assert client.get_object(Bucket=BUCKET, Key="plain/a.txt")["Body"].read() == b"b"


def _on_topic(bootstrap: str) -> list[bytes]:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=3000
    )
    partitions = [
        TopicPartition(TOPIC_MESSAGES, p)
        for p in consumer.partitions_for_topic(TOPIC_MESSAGES) or []
    ]
    consumer.assign(partitions)
    consumer.seek_to_beginning()
    values = [record.value for record in consumer]
    consumer.close()
    return values


def _produce(bootstrap: str, prefix: str, count: int) -> None:
    producer = make_producer(bootstrap)
    futures = [
        producer.send(TOPIC_MESSAGES, key=f"s{i}", value=f"{prefix}-{i}".encode())
        for i in range(count)
    ]
    for future in futures:
        future.get(timeout=30)
    producer.close()


def test_tansu_keeps_every_acknowledged_batch_across_restarts(s3: S3Server, tmp_path: Path) -> None:
    """Acknowledged, SIGKILLed, started again, produced to again (where a store without
    conditional writes let the new broker overwrite the first batches), then the same with the
    S3 server killed too: every record is there once."""
    bootstrap = f"127.0.0.1:{free_port()}"
    cluster = f"restarts-{free_port()}"
    broker = tansu_on_s3(bootstrap, s3, tmp_path / "tansu-1.log", cluster_id=cluster).start()
    try:
        ensure_topics(bootstrap)
        _produce(bootstrap, "first", 300)
        kill(broker)
        broker = tansu_on_s3(bootstrap, s3, tmp_path / "tansu-2.log", cluster_id=cluster).start()
        _produce(bootstrap, "second", 300)
        kill(broker)
        s3.kill()
        s3.start()
        broker = tansu_on_s3(bootstrap, s3, tmp_path / "tansu-3.log", cluster_id=cluster).start()
        _produce(bootstrap, "third", 300)
        values = _on_topic(bootstrap)
    finally:
        broker.stop()
    expected = {f"{p}-{i}".encode() for p in ("first", "second", "third") for i in range(300)}
    assert len(values) == len(expected) and set(values) == expected
