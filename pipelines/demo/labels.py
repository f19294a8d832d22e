"""Labels as they arrive in production while the demo's traffic flows: user reports for a share
of the messages, a while after the answer, and a moderator working through the review
service's queue with a personal token (the same API as the console). Both answer from the
corpus labels of the message: its spam label and, for a comment, its abuse label."""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from modstack.review_client import ClaimedByOther, ReviewClient, ReviewError

# the demo's users who report messages (a user report names its reporter)
REPORTERS = 500
log = logging.getLogger(__name__)
_REPEAT_SUFFIX = re.compile(r"-r\d+$")

Payload = dict[str, Any]
# message id -> its corpus labels, one per policy that labels it (a label names its policy)
Truth = dict[str, list[Payload]]


def renamed(payload: Payload, suffix: str) -> Payload:
    """A message or label of a repeated pass, under its fresh id and from a fresh sender.

    The sender is renamed too (`alice-r2@example.com`): a repeated pass is the same traffic
    from a new population, whose histories grow as the first pass's did. Replayed under the
    same senders, each pass added to their counts and labels, so a rollout judged in the
    second or third pass met sender features no model had trained on: a retrain that blocked
    more than the champion on its holdout (+0.017) blocked less live (-0.061), and the canary
    rolled it back at b = 0, c = 29."""
    if not suffix:
        return payload
    sender = str(payload["sender_id"])
    local, at, domain = sender.rpartition("@")
    fresh = f"{local}{suffix}@{domain}" if at else sender + suffix
    return dict(payload, message_id=payload["message_id"] + suffix, sender_id=fresh)


def original_id(message_id: str) -> str:
    """The corpus id of a message of a repeated pass (`<id>-rN`)."""
    return _REPEAT_SUFFIX.sub("", message_id)


class UserReports:
    """User reports for a share `share` of the messages, due `delay_s` after the message, each
    from one of `REPORTERS` users (reputation counts distinct reporters, with a cap each)."""

    def __init__(self, truth: Truth, share: float, delay_s: float) -> None:
        self.truth = truth
        self.share = share
        self.delay_s = delay_s
        self._rng = random.Random(7)
        self._queue: list[tuple[float, Payload]] = []  # (due, label), in due order

    def queue(self, messages: list[Payload], suffix: str) -> None:
        """Queue a report for a share of `messages` (sent under ids ending in `suffix`)."""
        due = time.monotonic() + self.delay_s
        for message in messages:
            for label in self.truth.get(message["message_id"], ()):
                if self._rng.random() >= self.share:
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
    review_addr: str,
    token: str | None,
    truth: Truth,
    on_label: Callable[[], None],
) -> None:
    """Every 2 s until `stop`, work through the review service's queue as the demo's
    moderator (a dev moderator's personal token): claim each item whose corpus label is known,
    decide it from that label; `on_label()` after each decision the service took."""
    with ReviewClient(review_addr, token=token) as client:
        while not stop.wait(2.0):
            try:
                work_queue(client, truth, on_label)
            except ReviewError as exc:  # the service busy or restarting: try again
                log.warning("demo moderator: %s", exc)


def _known_label(truth: Truth, message_id: str, labels: tuple[str, str]) -> str | None:
    """The corpus label of `message_id` for the policy whose labels are `labels`."""
    for payload in truth.get(original_id(message_id), ()):
        if payload["label"] in labels:
            return str(payload["label"])
    return None


def work_queue(client: ReviewClient, truth: Truth, on_label: Callable[[], None]) -> None:
    """Claim and decide every unclaimed review item whose corpus label is known."""
    for item in client.queue(limit=200):
        if item.kind != "review" or item.claimed_by is not None:
            continue
        label = _known_label(truth, item.message_id, (item.positive_label, item.negative_label))
        if label is None:
            continue
        try:
            client.claim(item.id)
        except ClaimedByOther:  # another moderator got there first
            continue
        client.decide(item.id, "harm" if label == item.positive_label else "ok")
        on_label()
