"""Review-queue items for tests that need a sender's item in the queue."""

from __future__ import annotations

from datetime import UTC, datetime

from services.serving.review_queue import ReviewQueue

SENT_AT = datetime(2002, 7, 1, tzinfo=UTC)


def enqueue(queue: ReviewQueue, message_id: str, sender_id: str, subject: str = "") -> None:
    """Add one pending item of `sender_id` (the champion's, score 0.5)."""
    queue.add(
        message_id=message_id,
        sender_id=sender_id,
        subject=subject or f"subject of {sender_id}",
        body="body",
        sent_at=SENT_AT,
        score=0.5,
        model_version="1",
        variant="champion",
    )
