"""The shared Kafka helpers against a real Tansu broker: round trip, at-least-once delivery,
clear errors for an unreachable broker, and a clean SIGTERM stop of the consumer loop."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest
from kafka import KafkaConsumer
from kafka.consumer.fetcher import ConsumerRecord

from modstack.kafka import (
    BatchConsumerLoop,
    BrokerUnavailable,
    ensure_topics,
    make_consumer,
    make_producer,
)
from modstack.names import ALL_TOPICS
from modstack.processes import child_env
from modstack.waits import free_port, wait_until

pytestmark = pytest.mark.integration


def _fresh_topic(bootstrap: str) -> str:
    topic = f"test.{uuid.uuid4().hex[:10]}"
    assert ensure_topics(bootstrap, [topic]) == [topic]
    return topic


def _produce(bootstrap: str, topic: str, values: list[str]) -> None:
    producer = make_producer(bootstrap)
    try:
        for value in values:
            producer.send(topic, key=f"key-{value}", value=value.encode())
        producer.flush(timeout=10)
    finally:
        producer.close()


def _poll_records(
    consumer: KafkaConsumer, expected: int, timeout_s: float = 20.0
) -> list[ConsumerRecord]:
    """Poll until `expected` records arrived (bounded), then once more to catch any extra."""
    records: list[ConsumerRecord] = []

    def got_all() -> bool:
        for batch in consumer.poll(timeout_ms=500).values():
            records.extend(batch)
        return len(records) >= expected

    wait_until(
        got_all,
        timeout_s,
        f"{expected} records",
        interval_s=0,
        detail=lambda: f"got {len(records)}",
    )
    for batch in consumer.poll(timeout_ms=500).values():
        records.extend(batch)
    return records


def _consume(consumer: KafkaConsumer, expected: int) -> list[str]:
    """Values of the records polled by `_poll_records`."""
    return [r.value.decode() for r in _poll_records(consumer, expected)]


def test_fixture_broker_has_the_architecture_topics(kafka_bootstrap: str) -> None:
    assert ensure_topics(kafka_bootstrap) == []  # nothing left to create
    consumer = make_consumer([], "probe", kafka_bootstrap)
    try:
        assert set(ALL_TOPICS) <= consumer.topics()
    finally:
        consumer.close()


def test_produce_consume_round_trip_keeps_keys_and_values(kafka_bootstrap: str) -> None:
    topic = _fresh_topic(kafka_bootstrap)
    values = [f"m{i}" for i in range(50)]
    _produce(kafka_bootstrap, topic, values)

    consumer = make_consumer([topic], f"g-{topic}", kafka_bootstrap)
    try:
        records = _poll_records(consumer, len(values))
    finally:
        consumer.close()
    assert sorted(r.value.decode() for r in records) == sorted(values)
    assert all(r.key == f"key-{r.value.decode()}" for r in records)  # str keys round-trip


def test_uncommitted_batch_is_redelivered_and_commit_resumes_exactly_after(
    kafka_bootstrap: str,
) -> None:
    topic = _fresh_topic(kafka_bootstrap)
    group = f"g-{topic}"
    first = [f"a{i}" for i in range(10)]
    _produce(kafka_bootstrap, topic, first)

    # Read without committing, then leave: the group's offsets have not moved.
    consumer = make_consumer([topic], group, kafka_bootstrap)
    assert sorted(_consume(consumer, len(first))) == sorted(first)
    consumer.close()

    # A new member of the same group gets the same batch again (at-least-once); commit it.
    consumer = make_consumer([topic], group, kafka_bootstrap)
    assert sorted(_consume(consumer, len(first))) == sorted(first)
    consumer.commit()
    consumer.close()

    # After the commit, the group continues exactly after the batch: no repeats, no gaps.
    second = [f"b{i}" for i in range(5)]
    _produce(kafka_bootstrap, topic, second)
    consumer = make_consumer([topic], group, kafka_bootstrap)
    try:
        assert sorted(_consume(consumer, len(second))) == sorted(second)
    finally:
        consumer.close()


def test_unreachable_broker_error_names_the_address() -> None:
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(BrokerUnavailable, match=address.replace(".", r"\.")):
        make_producer(address, bootstrap_timeout_ms=1_000)
    with pytest.raises(BrokerUnavailable, match="KAFKA_BOOTSTRAP_SERVERS"):
        make_consumer(["messages.v1"], "g", address, bootstrap_timeout_ms=1_000)


# A service-like process: BatchConsumerLoop with signal handlers, recording what it handled.
_LOOP_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from modstack.kafka import BatchConsumerLoop, make_consumer

    bootstrap, topic, group, out = sys.argv[1:5]
    consumer = make_consumer([topic], group, bootstrap)
    seen = Path(out)

    def handle(records):
        with seen.open("a") as f:
            f.writelines(r.value.decode() + "\\n" for r in records)

    loop = BatchConsumerLoop(consumer, handle, poll_timeout_ms=200)
    loop.install_signal_handlers()
    loop.run()
    print("closed" if consumer._closed else "still open", flush=True)
    """
)


def test_sigterm_stops_the_loop_after_committing_and_closes_the_consumer(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic = _fresh_topic(kafka_bootstrap)
    group = f"g-{topic}"
    values = [f"s{i}" for i in range(20)]
    _produce(kafka_bootstrap, topic, values)
    seen = tmp_path / "seen.txt"

    proc = subprocess.Popen(
        [sys.executable, "-c", _LOOP_SCRIPT, kafka_bootstrap, topic, group, str(seen)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=child_env(),
        text=True,
    )
    try:
        wait_until(
            lambda: seen.exists() and len(seen.read_text().split()) >= len(values),
            30,
            "the consumer loop handling all 20 records",
            detail=lambda: f"handled so far: {seen.read_text().split() if seen.exists() else []}",
        )
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, output
    assert output.strip().endswith("closed"), output
    assert sorted(seen.read_text().split()) == sorted(values)

    # The handled batch was committed before the exit: the group resumes after it.
    _produce(kafka_bootstrap, topic, ["after"])
    consumer = make_consumer([topic], group, kafka_bootstrap)
    try:
        assert _consume(consumer, 1) == ["after"]
    finally:
        consumer.close()


def test_stop_from_another_thread_ends_run_and_closes(kafka_bootstrap: str) -> None:
    topic = _fresh_topic(kafka_bootstrap)
    consumer = make_consumer([topic], f"g-{topic}", kafka_bootstrap)
    idle_calls = 0

    def on_idle() -> None:
        nonlocal idle_calls
        idle_calls += 1
        if idle_calls >= 2:
            loop.stop()

    loop = BatchConsumerLoop(consumer, lambda records: None, poll_timeout_ms=100, on_idle=on_idle)
    started = time.monotonic()
    loop.run()
    assert consumer._closed
    assert time.monotonic() - started < 15
