"""Step `replay`: send a corpus period through the ingestion API as live traffic.

Consumes `{DATA_DIR}/corpus/messages.parquet`; produces `POST /v1/messages` and `/v1/labels`
requests in event-time order (each label `--label-delay-hours` after its message, like a
moderator decision that arrives later), batched, at `--speed` events/s or as fast as the stack
takes them. Then it waits (bounded) until the processor has every replayed event in the message
log and prints the online features of the busiest senders.

Usage: `python -m pipelines.demo.replay [--period history|future|all] [--speed 200] [--limit N]`.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import httpx
import pandas as pd
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from tenacity import (
    retry,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential,
)

from modstack.events import MAX_BATCH
from modstack.http import DEV_CLIENT_KEY
from modstack.log import configure_logging
from modstack.message_log import Kind, MessageLog
from modstack.names import FEAST_JOIN_KEY, VIEW_SENDER_ACTIVITY, VIEW_SENDER_REPUTATION
from modstack.settings import get_settings
from modstack.waits import wait_until
from pipelines.backfill import DEFAULT_LABEL_DELAY, CorpusLabelPublisher, Period, corpus_events
from pipelines.demo.cli import demo_cli

log = logging.getLogger(__name__)

DEFAULT_BATCH = 100
# Stay well under ingestion's 8 MiB request limit however large the mails in a batch are.
MAX_REQUEST_BYTES = 2 * 1024 * 1024
# How long a request may keep failing with 503 (broker restarting) before the replay gives up.
UNAVAILABLE_PATIENCE_S = 60.0


class Unavailable(RuntimeError):
    """Ingestion answered 503 or could not be reached: worth retrying for a while."""


@dataclass
class ReplayReport:
    """What was sent and what ingestion did with it."""

    messages_sent: int = 0
    labels_sent: int = 0
    requests: int = 0
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    catch_up_seconds: float | None = None

    @property
    def events_per_second(self) -> float:
        sent = self.messages_sent + self.labels_sent
        return sent / self.seconds if self.seconds else 0.0


def timeline(messages: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """Messages and labels as one frame in event-time order (kind, time, payload)."""
    m = pd.DataFrame(
        {
            "kind": "message",
            "time": messages["sent_at"],
            "payload": [
                {
                    "message_id": r.message_id,
                    "sender_id": r.sender_id,
                    "subject": r.subject,
                    "body": r.body,
                    "sent_at": r.sent_at.isoformat(),
                }
                for r in messages.itertuples(index=False)
            ],
        }
    )
    lab = pd.DataFrame(
        {
            "kind": "label",
            "time": labels["labeled_at"],
            "payload": [
                {
                    "message_id": r.message_id,
                    "sender_id": r.sender_id,
                    "label": r.label,
                    "source": r.source,
                    "labeled_at": r.labeled_at.isoformat(),
                }
                for r in labels.itertuples(index=False)
            ],
        }
    )
    # A message sorts before a label at the same instant (stable sort, messages first).
    return pd.concat([m, lab], ignore_index=True).sort_values("time", kind="stable")


def chunks(events: pd.DataFrame, batch_size: int) -> Iterator[pd.DataFrame]:
    """Consecutive slices of the timeline: at most `batch_size` events and ~MAX_REQUEST_BYTES."""
    start, size = 0, 0
    payloads = events["payload"].tolist()
    for i, payload in enumerate(payloads):
        size += len(payload.get("body", "")) * 2 + 512  # rough JSON size, generous for escapes
        if i + 1 - start >= batch_size or size >= MAX_REQUEST_BYTES or i == len(payloads) - 1:
            yield events.iloc[start : i + 1]
            start, size = i + 1, 0


DEMO_CLIENT = "demo"


def demo_client_key() -> str:
    """The demo client app's ingestion key: INGESTION_CLIENT_KEYS (JSON {"client": "key"}) as
    ingestion reads it, else the development key. Read from the environment, not from
    services.ingestion.settings: pipelines do not import services."""
    raw = os.environ.get("INGESTION_CLIENT_KEYS", "")
    if raw:
        try:
            keys = json.loads(raw)
        except ValueError:
            keys = {}
        if isinstance(keys, dict) and keys:
            return str(keys.get(DEMO_CLIENT) or next(iter(keys.values())))
    return DEV_CLIENT_KEY


class IngestionClient:
    """Posts batches and makes sense of the answers (202, 422 with locations, 503)."""

    def __init__(
        self,
        base_url: str,
        report: ReplayReport,
        timeout_s: float = 30.0,
        http: httpx.Client | None = None,
    ) -> None:
        self._owns_http = http is None
        # Reports (POST /v1/labels) need a client app's key; the demo is client app "demo".
        self.http = http or httpx.Client(
            base_url=base_url,
            timeout=timeout_s,
            headers={"Authorization": f"Bearer {demo_client_key()}"},
        )
        self.report = report

    def close(self) -> None:
        if self._owns_http:
            self.http.close()

    def send(self, endpoint: str, field_name: str, items: list[dict[str, Any]]) -> int:
        """Post one batch; items refused with a 422 are reported and the rest sent again.

        Returns how many items were accepted.
        """
        while items:
            response = self._post(endpoint, {field_name: items})
            if response.status_code == 202:
                self.report.duplicates += len(response.json().get("duplicates", []))
                return len(items)
            if response.status_code == 422:
                bad = _refused_indexes(response.json(), field_name)
                if not bad:
                    raise RuntimeError(f"{endpoint} refused a batch: {response.text[:500]}")
                for index in sorted(bad, reverse=True):
                    refused = items.pop(index)
                    self.report.rejected.append(
                        {"message_id": refused["message_id"], "errors": bad[index]}
                    )
                continue
            raise RuntimeError(f"{endpoint} answered {response.status_code}: {response.text[:500]}")
        return 0

    @retry(
        retry=retry_if_exception_type(Unavailable),
        wait=wait_exponential(min=0.5, max=5),
        stop=stop_after_delay(UNAVAILABLE_PATIENCE_S),
        reraise=True,
    )
    def _post(self, endpoint: str, body: dict[str, Any]) -> httpx.Response:
        try:
            response = self.http.post(
                endpoint,
                content=json.dumps(body).encode(),
                headers={"content-type": "application/json"},
            )
        except httpx.TransportError as exc:
            raise Unavailable(f"cannot reach ingestion at {self.http.base_url}: {exc}") from exc
        self.report.requests += 1
        if response.status_code == 503:
            raise Unavailable(response.json().get("detail", response.text))
        return response


def _refused_indexes(answer: dict[str, Any], field_name: str) -> dict[int, list[str]]:
    """{item index: ["field: message", ...]} from a 422 on a batch."""
    bad: dict[int, list[str]] = {}
    for error in answer.get("detail", []):
        loc = error.get("loc", [])
        if len(loc) >= 3 and loc[1] == field_name and isinstance(loc[2], int):
            where = ".".join(str(p) for p in loc[3:]) or field_name
            bad.setdefault(loc[2], []).append(f"{where}: {error.get('msg')}")
    return bad


def payloads(events: pd.DataFrame, kind: str) -> list[dict[str, Any]]:
    """The payloads of the events of one kind ("message" or "label"), in timeline order."""
    return [p for k, p in zip(events["kind"], events["payload"], strict=True) if k == kind]


def pace_delay(started: float, sent: int, speed: float) -> float:
    """Seconds to wait (<= 0: none) so `sent` items since `started` (perf_counter) keep to
    `speed` per second."""
    return started + sent / speed - time.perf_counter()


def send_timeline(
    events: pd.DataFrame,
    ingestion_addr: str,
    *,
    speed: float | None = None,
    batch_size: int = DEFAULT_BATCH,
    on_progress: Callable[[int], None] | None = None,
    http: httpx.Client | None = None,
    corpus_labels: Callable[[list[dict[str, Any]]], int] | None = None,
) -> ReplayReport:
    """Post the timeline in order; `speed` caps events per second (None: as fast as possible).

    Labels with source "corpus" go to `corpus_labels` (the backfill's `CorpusLabelPublisher`:
    straight onto labels.v1, never through the public API); the others (user reports) are
    posted to ingestion. `http` is a ready client (e.g. a TestClient on an in-process app)
    instead of one to `ingestion_addr`.
    """
    if not 1 <= batch_size <= MAX_BATCH:
        raise ValueError(f"batch size must be within 1..{MAX_BATCH}")
    report = ReplayReport()
    client = IngestionClient(ingestion_addr, report, http=http)
    started = time.perf_counter()
    sent = 0
    try:
        for chunk in chunks(events, batch_size):
            _send_chunk(chunk, client, corpus_labels)
            sent += len(chunk)
            if on_progress:
                on_progress(len(chunk))
            if speed and (ahead := pace_delay(started, sent, speed)) > 0:
                time.sleep(ahead)
    finally:
        client.close()
    report.seconds = time.perf_counter() - started
    return report


def _send_chunk(
    chunk: pd.DataFrame,
    client: IngestionClient,
    corpus_labels: Callable[[list[dict[str, Any]]], int] | None,
) -> None:
    """One slice of the timeline: its messages first, so a label never arrives before its
    message; corpus labels to the publisher, user reports to ingestion."""
    report = client.report
    messages = payloads(chunk, "message")
    labels = payloads(chunk, "label")
    if messages:
        report.messages_sent += client.send("/v1/messages", "messages", messages)
    corpus = [p for p in labels if p["source"] == "corpus"]
    reports = [p for p in labels if p["source"] != "corpus"]
    if corpus:
        if corpus_labels is None:
            raise ValueError("corpus labels need a publisher (labels.v1), not HTTP")
        report.labels_sent += corpus_labels(corpus)
    if reports:
        report.labels_sent += client.send("/v1/labels", "labels", reports)


def wait_for_processor(
    message_ids: set[str],
    label_ids: set[str],
    data_dir: Path,
    timeout_s: float,
    on_progress: Callable[[int], None] | None = None,
) -> float:
    """Wait until the message log holds every message and label; returns the seconds waited.

    The processor writes the log after it pushed the features, so a logged event's features
    are readable online.
    """
    message_log = MessageLog(data_dir)
    started = time.perf_counter()
    logged = {"messages": 0, "labels": 0}
    wanted: tuple[tuple[Kind, set[str]], ...] = (("messages", message_ids), ("labels", label_ids))

    def all_logged() -> bool:
        for kind, ids in wanted:
            logged[kind] = len(set(message_log.read(kind, columns=[])["message_id"]) & ids)
        if on_progress:
            on_progress(logged["messages"] + logged["labels"])
        return logged["messages"] == len(message_ids) and logged["labels"] == len(label_ids)

    try:
        wait_until(all_logged, timeout_s, "the processor", interval_s=0.5, retry_on=())
    except TimeoutError:
        raise TimeoutError(
            f"the processor logged {logged['messages']}/{len(message_ids)} messages and "
            f"{logged['labels']}/{len(label_ids)} labels within {timeout_s:g} s: is "
            f"`python -m services.processor` running with DATA_DIR={data_dir}? "
            "(`modstack status`, `modstack logs processor`)"
        ) from None
    return time.perf_counter() - started


def sender_feature_table(senders: list[str], data_dir: Path | None = None) -> Table:
    """The online sender features of `senders` as a rich table (one row per sender)."""
    from features import store as featurestore
    from features.sender import ACTIVITY_FEATURES, REPUTATION_FEATURES

    store = featurestore.get_store(data_dir=data_dir)
    refs = [f"{VIEW_SENDER_ACTIVITY}:{f}" for f in ACTIVITY_FEATURES] + [
        f"{VIEW_SENDER_REPUTATION}:{f}" for f in REPUTATION_FEATURES
    ]
    values = store.get_online_features(
        features=refs, entity_rows=[{FEAST_JOIN_KEY: s} for s in senders]
    ).to_dict()
    table = Table(title="online sender features (Feast)")
    table.add_column("feature", no_wrap=True)
    for sender in senders:
        table.add_column(sender, justify="right", overflow="fold")
    for ref in refs:
        name = ref.split(":", 1)[1]
        cells = [_cell(values[name][i]) for i in range(len(senders))]
        table.add_row(name.removeprefix("sender_"), *cells)
    return table


def _cell(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.3f}"


def run(
    period: Period = "history",
    *,
    speed: float | None = None,
    batch_size: int = DEFAULT_BATCH,
    label_delay: timedelta = DEFAULT_LABEL_DELAY,
    limit: int | None = None,
    ingestion_addr: str | None = None,
    data_dir: Path | None = None,
    corpus_dir: Path | None = None,
    wait: bool = True,
    timeout_s: float = 600.0,
    show_senders: int = 4,
    corpus: pd.DataFrame | None = None,
    console: Console | None = None,
    http: httpx.Client | None = None,
    kafka_bootstrap_servers: str | None = None,
) -> ReplayReport:
    """Replay a corpus period: messages through ingestion, their corpus labels onto labels.v1
    (the backfill's publisher); wait for the processor, show some features."""
    from modstack.corpus import load_corpus

    settings = get_settings()
    console = console or Console(stderr=True)
    data_dir = data_dir or settings.data_dir
    ingestion_addr = ingestion_addr or settings.ingestion_addr
    corpus = corpus if corpus is not None else load_corpus(corpus_dir or data_dir)
    messages, labels = _period_events(corpus, period, label_delay, limit)
    events = timeline(messages, labels)
    console.print(
        f"replaying {len(messages)} {period} messages and {len(labels)} labels "
        f"(labels {label_delay} after their message) to {ingestion_addr}"
        + (f" at {speed:g} events/s" if speed else " as fast as it takes them")
    )
    publisher = CorpusLabelPublisher(kafka_bootstrap_servers or settings.kafka_bootstrap_servers)
    send = partial(
        send_timeline,
        events,
        ingestion_addr,
        speed=speed,
        batch_size=batch_size,
        http=http,
        corpus_labels=publisher.publish,
    )
    try:
        report = _with_progress(console, "sending", len(events), send)
    finally:
        publisher.close()
    _print_sent(report, console)
    if not wait:
        return report
    _catch_up(report, messages, labels, data_dir, timeout_s, console)
    if show_senders:
        busiest = messages["sender_id"].value_counts().head(show_senders).index.tolist()
        console.print(sender_feature_table(busiest, data_dir))
    return report


def _period_events(
    corpus: pd.DataFrame, period: Period, label_delay: timedelta, limit: int | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(messages, labels) of the period; with `limit`, its first messages and their labels."""
    messages, labels = corpus_events(corpus, period, label_delay)
    if limit is not None:
        messages = messages.sort_values("sent_at", kind="stable").head(limit)
        labels = labels[labels["message_id"].isin(messages["message_id"])]
    return messages, labels


_COLUMNS = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())


def _with_progress(
    console: Console, what: str, total: int, send: Callable[..., ReplayReport]
) -> ReplayReport:
    """`send(on_progress=...)` under a transient progress bar of `total` events."""
    with Progress(
        *_COLUMNS, TaskProgressColumn(), TimeElapsedColumn(), console=console, transient=True
    ) as progress:
        task = progress.add_task(what, total=total)
        return send(on_progress=lambda n: progress.advance(task, n))


def _print_sent(report: ReplayReport, console: Console) -> None:
    console.print(
        f"sent {report.messages_sent} messages and {report.labels_sent} labels in "
        f"{report.requests} requests, {report.seconds:.1f} s ({report.events_per_second:.0f} "
        f"events/s); {report.duplicates} already stored, {len(report.rejected)} refused"
    )
    for refused in report.rejected[:10]:
        console.print(f"  refused {refused['message_id']}: {'; '.join(refused['errors'])}")


def _catch_up(
    report: ReplayReport,
    messages: pd.DataFrame,
    labels: pd.DataFrame,
    data_dir: Path,
    timeout_s: float,
    console: Console,
) -> None:
    """Wait (bounded, with a progress bar) until the processor logged every event it took."""
    rejected = {r["message_id"] for r in report.rejected}
    message_ids = set(messages["message_id"]) - rejected
    label_ids = set(labels["message_id"]) - rejected
    with Progress(*_COLUMNS, TimeElapsedColumn(), console=console, transient=True) as progress:
        task = progress.add_task("processor catching up", total=len(message_ids) + len(label_ids))
        report.catch_up_seconds = wait_for_processor(
            message_ids,
            label_ids,
            data_dir,
            timeout_s,
            on_progress=lambda n: progress.update(task, completed=n),
        )
    console.print(
        f"the processor has every event in the message log "
        f"({report.catch_up_seconds:.1f} s after the last send)"
    )


cli = demo_cli(__doc__)


@cli.command(help=__doc__)
def main(
    period: Period = "history",
    speed: Annotated[float, typer.Option(help="events per second (0: as fast as possible)")] = 0,
    batch_size: int = DEFAULT_BATCH,
    label_delay_hours: Annotated[
        float, typer.Option(help="event time between a message and its label")
    ] = DEFAULT_LABEL_DELAY.total_seconds() / 3600,
    limit: Annotated[
        int | None, typer.Option(help="only the first N messages of the period")
    ] = None,
    ingestion_addr: Annotated[str | None, typer.Option(help="default: INGESTION_ADDR")] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="where the processor writes the message log (DATA_DIR)")
    ] = None,
    corpus_dir: Annotated[
        Path | None, typer.Option(help="data dir holding corpus/ (--data-dir)")
    ] = None,
    no_wait: Annotated[
        bool, typer.Option("--no-wait", help="do not wait for the processor")
    ] = False,
    timeout: Annotated[float, typer.Option(help="catch-up bound, seconds")] = 600.0,
    show_senders: int = 4,
) -> ReplayReport:
    """CLI entry point."""
    configure_logging("replay")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise here
    return run(
        period,
        speed=speed or None,
        batch_size=batch_size,
        label_delay=timedelta(hours=label_delay_hours),
        limit=limit,
        ingestion_addr=ingestion_addr,
        data_dir=data_dir,
        corpus_dir=corpus_dir,
        wait=not no_wait,
        timeout_s=timeout,
        show_senders=show_senders,
    )


if __name__ == "__main__":
    cli()
