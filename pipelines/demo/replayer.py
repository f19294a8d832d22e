"""The traffic both rollout demos send: a timeline replayed to serving (and ingestion) by a few
clients in parallel, with the labels arriving as they do in production."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

import httpx
import pandas as pd

from modstack.settings import get_settings
from pipelines.demo.labels import Truth, UserReports, moderate_until, renamed
from pipelines.demo.replay import IngestionClient, ReplayReport, pace_delay, payloads


@dataclass
class TrafficStats:
    """What the replayer sent and what serving answered."""

    moderated: int = 0
    failed: int = 0  # not answered 200, after the one retry a shed request gets
    shed_retries: int = 0  # 503 + Retry-After (serving's load shedding), retried once
    by_variant: Counter[str] = field(default_factory=Counter)  # "<policy> <variant>" answers
    by_action: Counter[str] = field(default_factory=Counter)
    messages_ingested: int = 0
    user_reports: int = 0  # labels sent as user reports (delayed, for a share of messages)
    moderator_labels: int = 0  # review-queue items labelled through serving's review API
    requests_per_s: float = 0.0  # moderation requests answered per second, over the run
    last_event_time: datetime | None = None
    passes: int = 0


class TrafficReplayer:
    """Replays a timeline (pipelines.demo.replay.timeline: messages and labels in event-time order).

    Each message goes to serving's POST /v1/moderate (a few requests in flight, like several
    clients) and, with `ingest`, to ingestion with its label later in the timeline, so the
    stream keeps sender features fresh and the message log fills with labelled data.
    `cycle` starts over when the timeline ends, with fresh message ids (`-rN`), so a rollout
    never runs out of traffic; those repeats are ingested too, and labels arrive for them the
    way they do in production: user reports for a share `report_share` of the messages,
    `report_delay_s` after the answer, through ingestion's POST /v1/labels. With `moderate`, a
    moderator works through the review service's queue with a personal token (claim, decide),
    answering from the corpus labels.

    Args:
        events: the timeline.
        speed: messages per second at most (None: as fast as serving answers).
    """

    def __init__(
        self,
        events: pd.DataFrame,
        *,
        speed: float | None = None,
        ingest: bool = True,
        cycle: bool = False,
        workers: int = 8,
        chunk: int = 20,
        report_share: float = 0.5,
        report_delay_s: float = 5.0,
        moderate: bool = True,
    ) -> None:
        settings = get_settings()
        self.events = events
        self.speed = speed
        self.ingest = ingest
        self.cycle = cycle
        self.workers = workers
        self.chunk = chunk
        self.serving_addr = settings.serving_addr
        self.ingestion_addr = settings.ingestion_addr
        self.review_addr = settings.review_addr
        self.moderate = moderate
        # the corpus labels of every message: what a reporting user or a moderator would say
        self.truth: Truth = {}
        for payload in events.loc[events["kind"] == "label", "payload"]:
            self.truth.setdefault(payload["message_id"], []).append(payload)
        self._reports = UserReports(self.truth, report_share, report_delay_s)
        self.stats = TrafficStats()
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._started = 0.0
        self._sent_messages = 0

    # -- running ------------------------------------------------------------------------------

    def run(self) -> TrafficStats:
        """Send the whole timeline in this thread (until stopped, when cycling)."""
        ingestion = IngestionClient(self.ingestion_addr, ReplayReport()) if self.ingest else None
        self._started, self._sent_messages = time.perf_counter(), 0
        moderator = self._start_moderator() if self.moderate else None
        try:
            with (
                httpx.Client(base_url=self.serving_addr, timeout=30) as http,
                ThreadPoolExecutor(self.workers, thread_name_prefix="demo-traffic") as pool,
            ):
                send = partial(self._send_chunk, http, pool, ingestion)
                while not self._stop.is_set():
                    self._send_pass(send)
                    if not self.cycle:
                        break
        finally:
            self._finish(moderator, ingestion)
        return self.stats

    def _send_pass(self, send: Callable[[pd.DataFrame, str], None]) -> None:
        """One pass over the timeline, in chunks (under fresh ids after the first)."""
        suffix = f"-r{self.stats.passes}" if self.stats.passes else ""
        for start in range(0, len(self.events), self.chunk):
            if self._stop.is_set():
                break
            send(self.events.iloc[start : start + self.chunk], suffix)
        self.stats.passes += 1

    def _send_chunk(
        self,
        http: httpx.Client,
        pool: ThreadPoolExecutor,
        ingestion: IngestionClient | None,
        part: pd.DataFrame,
        suffix: str,
    ) -> None:
        messages = payloads(part, "message")
        list(pool.map(partial(self._moderate, http, suffix=suffix), messages))
        if ingestion is not None:
            self._ingest(ingestion, messages, suffix)
        self.stats.last_event_time = part["time"].iloc[-1].to_pydatetime()
        self._sent_messages += len(messages)
        if self.speed:
            ahead = pace_delay(self._started, self._sent_messages, self.speed)
            if ahead > 0:
                self._stop.wait(ahead)

    def _ingest(
        self, ingestion: IngestionClient, messages: list[dict[str, Any]], suffix: str
    ) -> None:
        if messages:
            # messages before their labels, as in pipelines.demo.replay
            self.stats.messages_ingested += ingestion.send(
                "/v1/messages", "messages", [renamed(m, suffix) for m in messages]
            )
        # the corpus labels are not sent: labels arrive as in production, user reports for a
        # share of the messages and moderator decisions
        self._reports.queue(messages, suffix)
        due = self._reports.pop_due()
        if due:
            self.stats.user_reports += ingestion.send("/v1/labels", "labels", due)

    def _finish(
        self, moderator: threading.Thread | None, ingestion: IngestionClient | None
    ) -> None:
        self._stop.set()
        if moderator is not None:
            moderator.join(timeout=10)
        if ingestion is not None:
            ingestion.close()
        elapsed = time.perf_counter() - self._started
        self.stats.requests_per_s = self.stats.moderated / elapsed if elapsed > 0 else 0.0

    # -- the moderator and the moderation requests ----------------------------------------------

    def _start_moderator(self) -> threading.Thread:
        moderator = threading.Thread(
            target=moderate_until,
            args=(
                self._stop,
                self.review_addr,
                None,  # REVIEW_TOKEN, else the dev moderator's personal token
                self.truth,
                self._count_moderator_label,
            ),
            name="demo-moderator",
            daemon=True,
        )
        moderator.start()
        return moderator

    def _count_moderator_label(self) -> None:
        with self._lock:
            self.stats.moderator_labels += 1

    def _moderate(self, http: httpx.Client, message: dict[str, Any], suffix: str) -> None:
        body = renamed(message, suffix)
        try:
            response = http.post("/v1/moderate", json=body)
            if response.status_code == 503 and "Retry-After" in response.headers:
                # shed by serving: a well-behaved client waits as told and tries once more
                with self._lock:
                    self.stats.shed_retries += 1
                self._stop.wait(min(float(response.headers["Retry-After"]), 5.0))
                response = http.post("/v1/moderate", json=body)
        except (httpx.HTTPError, ValueError):
            with self._lock:
                self.stats.failed += 1
            return
        self._count_answer(response)

    def _count_answer(self, response: httpx.Response) -> None:
        with self._lock:
            if response.status_code == 200:
                answer = response.json()
                self.stats.moderated += 1
                for policy, decision in answer["policies"].items():
                    self.stats.by_variant[f"{policy} {decision['variant']}"] += 1
                self.stats.by_action[answer["action"]] += 1
            else:
                self.stats.failed += 1

    # -- in the background ----------------------------------------------------------------------

    def start(self) -> TrafficReplayer:
        """Run in a background thread (see `stop`)."""

        def target() -> None:
            try:
                self.run()
            except BaseException as exc:  # surfaced by the follower, not lost in the thread
                self.error = exc

        self._thread = threading.Thread(target=target, name="demo-traffic", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> TrafficStats:
        """Stop sending (the chunk in flight finishes) and return what was sent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        return self.stats
