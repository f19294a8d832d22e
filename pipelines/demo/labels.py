"""Labels as they arrive in production while the demo's traffic flows: user reports for a share
of the messages, a while after the answer, and a moderator working through serving's review
queue. Both answer from the corpus label of the message."""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

# the demo's users who report messages (a user report names its reporter)
REPORTERS = 500
log = logging.getLogger(__name__)
_REPEAT_SUFFIX = re.compile(r"-r\d+$")

Payload = dict[str, Any]


def renamed(payload: Payload, suffix: str) -> Payload:
    """A message or label of a repeated pass, under its fresh id."""
    return dict(payload, message_id=payload["message_id"] + suffix) if suffix else payload


def original_id(message_id: str) -> str:
    """The corpus id of a message of a repeated pass (`<id>-rN`)."""
    return _REPEAT_SUFFIX.sub("", message_id)


class UserReports:
    """User reports for a share `share` of the messages, due `delay_s` after the message, each
    from one of `REPORTERS` users (reputation counts distinct reporters, with a cap each)."""

    def __init__(self, truth: dict[str, Payload], share: float, delay_s: float) -> None:
        self.truth = truth
        self.share = share
        self.delay_s = delay_s
        self._rng = random.Random(7)
        self._queue: list[tuple[float, Payload]] = []  # (due, label), in due order

    def queue(self, messages: list[Payload], suffix: str) -> None:
        """Queue a report for a share of `messages` (sent under ids ending in `suffix`)."""
        due = time.monotonic() + self.delay_s
        for message in messages:
            label = self.truth.get(message["message_id"])
            if label is None or self._rng.random() >= self.share:
                continue
            reporter = f"demo-user-{self._rng.randrange(REPORTERS)}"
            report = dict(renamed(label, suffix), source="user_report", reporter_id=reporter)
            self._queue.append((due, report))

    def pop_due(self) -> list[Payload]:
        """The reports due by now, taken off the queue."""
        now = time.monotonic()
        due = [r for t, r in self._queue if t <= now]
        if due:
            self._queue = [(t, r) for t, r in self._queue if t > now]
        return due


def moderate_until(
    stop: threading.Event,
    serving_addr: str,
    admin_token: str,
    truth: dict[str, Payload],
    on_label: Callable[[], None],
) -> None:
    """Every 2 s until `stop`, label what serving queued for review from the corpus label (the
    demo's moderator); `on_label()` after each label serving took."""
    headers = {"Authorization": f"Bearer {admin_token}"}
    with httpx.Client(base_url=serving_addr, timeout=30, headers=headers) as http:
        while not stop.wait(2.0):
            try:
                review_queue(http, truth, on_label)
            except httpx.HTTPError as exc:  # serving busy or restarting: try again
                log.warning("demo moderator: %s", exc)


def review_queue(
    http: httpx.Client, truth: dict[str, Payload], on_label: Callable[[], None]
) -> None:
    """Answer every item of serving's review queue whose corpus label is known."""
    queue = http.get("/v1/review", params={"limit": 200})
    queue.raise_for_status()
    for item in queue.json().get("items", []):
        message_id = item["message_id"]
        label = truth.get(original_id(message_id))
        if label is None:
            continue
        answer = http.post(
            f"/v1/review/{message_id}",
            json={"label": label["label"], "moderator": "demo-moderator"},
        )
        if answer.status_code == 200:
            on_label()
