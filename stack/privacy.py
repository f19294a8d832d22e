"""Erasure of one sender's personal data across the stores that hold it (`modstack forget`).

Composition only: each store owns its erasure, and this module calls each in turn
(docs/privacy.md has the whole inventory):

- the message log (subjects, bodies, labels): `MessageLog.erase_sender` rewrites its files;
- dead letters (raw bytes of refused records, keyed by sender; a file under DATA_DIR, or the
  database of DEADLETTER_DATABASE_URL): `DeadLetterStore.erase_sender`;
- the Feast offline store (parquet files, or PostgreSQL tables) and online store (SQLite, or
  Redis) hold the sender's feature rows: `features.store.erase_sender_offline` /
  `erase_sender_online`;
- the review service's queue, its audit and appeals (the text moderators read):
  `DELETE /v1/admin/senders/{sender_id}` on the review service (`erase_from_review`);
- a running ingestion's recent message ids (kept with their sender to check reports):
  `DELETE /v1/admin/senders/{sender_id}` on ingestion (`erase_from_ingestion`).

What is in flight or in another process's memory is not here: the broker's topics keep events
until their retention (Tansu: until it restarts); a running processor keeps the sender's counts
in memory until it restarts and rebuilds from the erased log, so run `forget` with the
processor stopped or restart it after.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from features.store import ONLINE_DB, erase_sender_offline, erase_sender_online
from modstack.deadletter_store import DeadLetterStore
from modstack.message_log import MessageLog


@dataclass
class Erased:
    """How many rows of the sender each store held (and no longer holds)."""

    sender_id: str
    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        """Rows erased in all."""
        return sum(self.counts.values())


def forget_sender(
    sender_id: str,
    data_dir: Path,
    *,
    feast_dir: Path | None = None,
    review: Callable[[str], int] | None = None,
    ingestion: Callable[[str], int] | None = None,
) -> Erased:
    """Erase everything stored about `sender_id`; returns the counts per store.

    `feast_dir` (the Feast data folder), `review` (erases the review service's items, e.g.
    `erase_from_review`) and `ingestion` (erases a running ingestion's memory, e.g.
    `erase_from_ingestion`) are skipped when None.
    """
    erased = Erased(sender_id)
    for kind, count in MessageLog(data_dir).erase_sender(sender_id).items():
        erased.counts[f"message_log.{kind}"] = count
    erased.counts["deadletters"] = DeadLetterStore(data_dir).erase_sender(sender_id)
    if feast_dir is not None:
        for view, count in erase_sender_offline(sender_id, feast_dir).items():
            erased.counts[f"feast.offline.{view}"] = count
        online = erase_sender_online(sender_id, feast_dir)
        if online is None:
            erased.notes.append(
                f"no online store: no {feast_dir / ONLINE_DB}, and FEAST_ONLINE_STORE_TYPE "
                "is not redis"
            )
        else:
            erased.counts["feast.online"] = online
    remote = (
        (review, "review.items", "the review service", "its queue still holds the sender's "
         "items; run forget again when it is up"),
        (ingestion, "ingestion.recent_message_ids", "ingestion", "if it runs, restart it to "
         "drop the sender's recent message ids from its memory"),
    )  # fmt: skip
    for erase, key, service, otherwise in remote:
        if erase is None:
            continue
        try:
            erased.counts[key] = erase(sender_id)
        except httpx.HTTPError as exc:
            erased.notes.append(f"{service} not reached ({exc}): {otherwise}")
    return erased


def _admin_erasure(addr: str, admin_token: str, count_field: str) -> Callable[[str], int]:
    """A function that asks the service at `addr` to erase a sender (its admin endpoint
    `DELETE /v1/admin/senders/{sender_id}`) and returns the count it reports."""

    def erase(sender_id: str) -> int:
        response = httpx.delete(
            f"{addr.rstrip('/')}/v1/admin/senders/{sender_id}",
            headers={"Authorization": f"Bearer {admin_token}"},
            timeout=10.0,
        )
        response.raise_for_status()
        return int(response.json()[count_field])

    return erase


def erase_from_ingestion(addr: str, admin_token: str) -> Callable[[str], int]:
    """A function that asks the ingestion at `addr` to drop a sender's recent message ids."""
    return _admin_erasure(addr, admin_token, "recent_message_ids")


def erase_from_review(addr: str, admin_token: str) -> Callable[[str], int]:
    """A function that asks the review service at `addr` to erase a sender's items."""
    return _admin_erasure(addr, admin_token, "items")
