"""BatchConsumerLoop's commit failures, with a stand-in consumer: a broker gone for a moment
(a retriable error) leaves the batch uncommitted and the loop running; anything else ends it."""

from __future__ import annotations

from typing import Any

import pytest
from kafka.errors import KafkaConnectionError, UnsupportedVersionError

from modstack.kafka import BatchConsumerLoop


class Consumer:
    """Polls one record per call; `commit` raises the queued errors first."""

    def __init__(self, commit_errors: list[Exception]) -> None:
        self.commit_errors = commit_errors
        self.commits = 0
        self.closed = False
        self.polled = 0

    def poll(self, timeout_ms: int, max_records: int) -> dict[str, list[Any]]:
        self.polled += 1
        return {"tp": [f"record-{self.polled}"]}

    def commit(self) -> None:
        if self.commit_errors:
            raise self.commit_errors.pop(0)
        self.commits += 1

    def close(self) -> None:
        self.closed = True


def test_a_commit_while_the_broker_is_unreachable_leaves_the_batch_and_the_loop_goes_on() -> None:
    consumer = Consumer([KafkaConnectionError("111 ECONNREFUSED")])
    handled: list[list[Any]] = []

    def handle(records: list[Any]) -> None:
        handled.append(records)
        if len(handled) == 3:
            loop.stop()

    loop = BatchConsumerLoop(consumer, handle)  # type: ignore[arg-type]
    loop.run()
    assert handled == [["record-1"], ["record-2"], ["record-3"]]
    assert consumer.commits == 2 and consumer.closed  # the first commit failed, nothing crashed


def test_a_commit_error_that_is_not_retriable_ends_the_loop() -> None:
    consumer = Consumer([UnsupportedVersionError("no")])
    loop = BatchConsumerLoop(consumer, lambda records: None)  # type: ignore[arg-type]
    with pytest.raises(UnsupportedVersionError):
        loop.run()
    assert consumer.closed
