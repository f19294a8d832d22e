"""The review queue: items in, claims with a lease, decisions audited and turned into labels.

One implementation on SQLAlchemy Core for SQLite and PostgreSQL. Every state change is one
conditional UPDATE (the condition is the rule: pending, not claimed by someone else whose
lease runs), so two moderators racing for an item get one winner on both databases, and the
loser is told who holds it. A decision, its audit row and the label to publish (the outbox)
commit in one transaction; the publisher sends the outbox to `labels.v1` afterwards.

Ordering: items pending longer than the age floor first (oldest first), then by priority
(closeness of the score to the policy's cut-off, plus champion/challenger disagreement when
both sent the message), then oldest first.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import Connection, Engine, and_, case, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from modstack.events import LabelEvent, ReviewRequest
from modstack.policy import catalogue
from services.review.db import decisions, items, outbox

Decision = Literal["harm", "ok", "escalate", "skip"]
LABELLING: tuple[Decision, ...] = ("harm", "ok")
HISTORY_LIMIT = 20
Clock = Callable[[], float]


class ItemNotFound(LookupError):
    """No item with that id."""


class ClaimConflict(RuntimeError):
    """The item is claimed by someone else, already decided, or the caller's claim expired."""


class NotPermitted(PermissionError):
    """The caller's role may not do this to this item (an escalated item is for admins)."""


def normalised_text_hash(subject: str, body: str) -> str:
    """The hash a wave of copies shares: lower case, letters and digits only, spaces folded."""
    text = re.sub(r"[^0-9a-z]+", " ", f"{subject}\n{body}".lower()).strip()
    return hashlib.sha256(text.encode()).hexdigest()


def priority_of(score: float, cutoff: float, other_score: float | None) -> float:
    """In [0, 2]: closeness of `score` to `cutoff` (1 at the cut-off, 0 at a bound), plus how
    far champion and challenger disagree when both scores are known."""
    span = max(cutoff, 1.0 - cutoff) or 1.0
    closeness = 1.0 - min(1.0, abs(score - cutoff) / span)
    disagreement = abs(score - other_score) if other_score is not None else 0.0
    return round(closeness + disagreement, 6)


def iso(epoch: float | None) -> str | None:
    """An epoch time as ISO 8601 UTC (None stays None)."""
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).isoformat()


@dataclass(frozen=True)
class Actor:
    """Who acts: the signed-in account (never a name from a request body)."""

    username: str
    role: Literal["moderator", "admin"]

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True)
class Decided:
    """What a decision did: the items decided (the one named first, then its wave)."""

    item_ids: list[int]
    decision: Decision
    label: str | None
    released: bool


def _row(row: Any) -> dict[str, Any]:
    return dict(row._mapping)


class ReviewQueue:
    """The queue on one engine (SQLite file or PostgreSQL)."""

    def __init__(
        self,
        engine: Engine,
        *,
        lease_s: float,
        age_floor_s: float,
        cutoff: Callable[[str], float] = lambda _policy: 0.5,
        clock: Clock = time.time,
    ) -> None:
        self.engine = engine
        self.lease_s = lease_s
        self.age_floor_s = age_floor_s
        self.cutoff = cutoff
        self.clock = clock

    # -- in --------------------------------------------------------------------------------

    def add_request(self, request: ReviewRequest) -> bool:
        """Queue one ReviewRequest; False when (message, policy) is queued already. A repeat
        from the other variant records its score (disagreement raises the priority)."""
        now = self.clock()
        values = {
            "kind": "review",
            "message_id": request.message_id,
            "policy": request.policy,
            "sender_id": request.sender_id,
            "subject": request.subject,
            "body": request.body,
            "text_hash": normalised_text_hash(request.subject, request.body),
            "sent_at": request.sent_at.isoformat(),
            "score": request.score,
            "model_version": request.model_version,
            "variant": request.variant,
            "review_cutoff": request.review_cutoff,
            "block_cutoff": request.block_cutoff,
            "features": json.dumps(request.features) if request.features else None,
            "priority": priority_of(request.score, self.cutoff(request.policy), None),
            # its age counts from serving's request (a consumer that lagged hides nothing)
            "enqueued_at": min(now, request.requested_at.timestamp()),
            "status": "pending",
            "escalated": False,
        }
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(items).values(**values))
            return True
        except IntegrityError:
            self._record_other_variant(request)
            return False

    def _record_other_variant(self, request: ReviewRequest) -> None:
        key = and_(
            items.c.message_id == request.message_id,
            items.c.policy == request.policy,
            items.c.kind == "review",
        )
        with self.engine.begin() as conn:
            row = conn.execute(select(items).where(key)).first()
            if row is None or row.variant == request.variant or row.other_score is not None:
                return
            priority = priority_of(row.score, self.cutoff(row.policy), request.score)
            conn.execute(
                update(items)
                .where(items.c.id == row.id)
                .values(other_score=request.score, priority=priority)
            )

    def add_appeal(
        self,
        *,
        client: str,
        message_id: str,
        sender_id: str,
        policy: str,
        subject: str,
        body: str,
        sent_at: datetime,
        reason: str,
        model_version: str,
        score: float,
    ) -> tuple[dict[str, Any], bool]:
        """File an appeal (one per message and policy); returns the item and whether it is new."""
        now = self.clock()
        values = {
            "kind": "appeal",
            "message_id": message_id,
            "policy": policy,
            "sender_id": sender_id,
            "subject": subject,
            "body": body,
            "text_hash": normalised_text_hash(subject, body),
            "sent_at": sent_at.isoformat(),
            "score": score,
            "model_version": model_version,
            "variant": "champion",
            # appeals wait on a person: they go first among items of the same age
            "priority": 2.0,
            "enqueued_at": now,
            "status": "pending",
            "escalated": False,
            "appeal_id": secrets.token_urlsafe(16),
            "appeal_reason": reason,
            "appeal_client": client,
        }
        key = and_(
            items.c.message_id == message_id, items.c.policy == policy, items.c.kind == "appeal"
        )
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(items).values(**values))
            created = True
        except IntegrityError:
            created = False
        with self.engine.connect() as conn:
            return _row(conn.execute(select(items).where(key)).one()), created

    def appeal(self, appeal_id: str, client: str) -> dict[str, Any]:
        """The appeal item with this public id, filed by `client`."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(items).where(
                    items.c.appeal_id == appeal_id,
                    items.c.kind == "appeal",
                    items.c.appeal_client == client,
                )
            ).first()
        if row is None:
            raise ItemNotFound(f"no appeal {appeal_id!r} filed by this client")
        return _row(row)

    # -- reading ---------------------------------------------------------------------------

    def _visible(self, actor: Actor | None) -> Any:
        """Pending items an actor may see: escalated ones are for admins only."""
        pending = items.c.status == "pending"
        if actor is not None and actor.is_admin:
            return pending
        return and_(pending, items.c.escalated.is_(False))

    def pending(
        self, actor: Actor | None, policy: str | None = None, limit: int = 200
    ) -> list[dict[str, Any]]:
        """Pending items in the order moderators take them (see the module docstring)."""
        now = self.clock()
        starving = case((items.c.enqueued_at <= now - self.age_floor_s, 0), else_=1)
        where = [self._visible(actor)]
        if policy:
            where.append(items.c.policy == policy)
        query = (
            select(items)
            .where(*where)
            .order_by(
                starving,
                case((starving == 0, items.c.enqueued_at), else_=-items.c.priority),
                items.c.enqueued_at,
                items.c.id,
            )
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(query)]

    def get(self, item_id: int) -> dict[str, Any]:
        with self.engine.connect() as conn:
            row = conn.execute(select(items).where(items.c.id == item_id)).first()
        if row is None:
            raise ItemNotFound(f"no review item {item_id}")
        return _row(row)

    def history(self, item: dict[str, Any], limit: int = HISTORY_LIMIT) -> list[dict[str, Any]]:
        """The sender's other items in this queue, newest first, with their decisions."""
        query = (
            select(items)
            .where(items.c.sender_id == item["sender_id"], items.c.id != item["id"])
            .order_by(items.c.enqueued_at.desc(), items.c.id.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(query)]

    def wave(self, item: dict[str, Any], actor: Actor) -> list[dict[str, Any]]:
        """Other pending review items of the same policy with the same normalised text that
        `actor` may decide now (unclaimed, claimed by them, or with an expired lease)."""
        now = self.clock()
        query = select(items).where(
            self._visible(actor),
            items.c.kind == item["kind"],
            items.c.policy == item["policy"],
            items.c.text_hash == item["text_hash"],
            items.c.id != item["id"],
            self._free_for(actor.username, now),
        )
        with self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(query.order_by(items.c.id))]

    # -- claims ----------------------------------------------------------------------------

    @staticmethod
    def _free_for(username: str, now: float) -> Any:
        return or_(
            items.c.claimed_by.is_(None),
            items.c.claimed_by == username,
            items.c.claim_expires_at <= now,
        )

    def _why_not(self, item_id: int, actor: Actor) -> Exception:
        item = self.get(item_id)
        if item["status"] != "pending":
            return ClaimConflict(f"item {item_id} was decided by {item['decided_by']} already")
        if item["escalated"] and not actor.is_admin:
            return NotPermitted(f"item {item_id} is escalated: an admin decides it")
        if item["claimed_by"] and item["claimed_by"] != actor.username:
            return ClaimConflict(f"item {item_id} is claimed by {item['claimed_by']}")
        return ClaimConflict(f"item {item_id}: your claim has expired; claim it again")

    def claim(self, item_id: int, actor: Actor) -> dict[str, Any]:
        """Hold the item for `actor` for the lease (renewing their own claim)."""
        now = self.clock()
        with self.engine.begin() as conn:
            done = conn.execute(
                update(items)
                .where(
                    items.c.id == item_id,
                    self._visible(actor),
                    self._free_for(actor.username, now),
                )
                .values(
                    claimed_by=actor.username, claimed_at=now, claim_expires_at=now + self.lease_s
                )
            )
        if done.rowcount != 1:
            raise self._why_not(item_id, actor)
        return self.get(item_id)

    def release(self, item_id: int, actor: Actor) -> dict[str, Any]:
        """Give the claim back (only its holder, or an admin)."""
        holder = items.c.claimed_by == actor.username
        with self.engine.begin() as conn:
            done = conn.execute(
                update(items)
                .where(items.c.id == item_id, items.c.status == "pending")
                .where(holder if not actor.is_admin else items.c.claimed_by.is_not(None))
                .values(claimed_by=None, claimed_at=None, claim_expires_at=None)
            )
        if done.rowcount != 1:
            item = self.get(item_id)
            raise ClaimConflict(
                f"item {item_id} is not claimed by you (held by {item['claimed_by'] or 'nobody'})"
            )
        return self.get(item_id)

    # -- decisions -------------------------------------------------------------------------

    def decide(
        self, item_id: int, actor: Actor, decision: Decision, *, wave: bool = False
    ) -> Decided:
        """Decide an item `actor` holds a live claim on; with `wave`, its wave too (each one
        audited and labelled on its own). skip gives the claim back; escalate hands the item
        to the admins; harm / ok label it with the policy's positive / negative label."""
        now = self.clock()
        if decision == "skip":
            self._own_live_claim(item_id, actor, now)
            self.release(item_id, actor)
            return Decided([item_id], decision, None, False)
        if decision == "escalate":
            return self._escalate(item_id, actor, now)
        item = self._own_live_claim(item_id, actor, now)
        targets = [item] + (self.wave(item, actor) if wave else [])
        label = _label_of(item["policy"], decision)
        released = item["kind"] == "appeal" and decision == "ok"
        decided: list[int] = []
        with self.engine.begin() as conn:
            for target in targets:
                mine = target["id"] == item_id
                if self._decide_one(conn, target, actor, decision, label, now, mine, item_id):
                    decided.append(target["id"])
        if item_id not in decided:
            raise self._why_not(item_id, actor)
        return Decided(decided, decision, label, released)

    def _own_live_claim(self, item_id: int, actor: Actor, now: float) -> dict[str, Any]:
        item = self.get(item_id)
        live = item["claimed_by"] == actor.username and (item["claim_expires_at"] or 0) > now
        if item["status"] != "pending" or not live:
            raise self._why_not(item_id, actor)
        if item["escalated"] and not actor.is_admin:
            raise NotPermitted(f"item {item_id} is escalated: an admin decides it")
        return item

    def _escalate(self, item_id: int, actor: Actor, now: float) -> Decided:
        item = self._own_live_claim(item_id, actor, now)
        with self.engine.begin() as conn:
            conn.execute(
                update(items)
                .where(items.c.id == item_id)
                .values(escalated=True, claimed_by=None, claimed_at=None, claim_expires_at=None)
            )
            conn.execute(insert(decisions).values(**_audit(item, actor, "escalate", None, now)))
        return Decided([item_id], "escalate", None, False)

    def _decide_one(
        self,
        conn: Connection,
        item: dict[str, Any],
        actor: Actor,
        decision: Decision,
        label: str,
        now: float,
        mine: bool,
        lead: int,
    ) -> bool:
        owner = (
            and_(items.c.claimed_by == actor.username, items.c.claim_expires_at > now)
            if mine
            else self._free_for(actor.username, now)
        )
        released = item["kind"] == "appeal" and decision == "ok"
        done = conn.execute(
            update(items)
            .where(items.c.id == item["id"], items.c.status == "pending", owner)
            .values(
                status="decided",
                decision=decision,
                label=label,
                decided_by=actor.username,
                decided_at=now,
                claim_expires_at=None,
                released_at=now if released else None,
            )
        )
        if done.rowcount != 1:
            return False
        audit = _audit(item, actor, decision, label, now)
        audit.update(wave_of=None if mine else lead, released=released)
        conn.execute(insert(decisions).values(**audit))
        event = LabelEvent(
            message_id=item["message_id"],
            sender_id=item["sender_id"],
            label=label,
            source="moderator",
            labeled_at=datetime.fromtimestamp(now, UTC),
            received_at=datetime.fromtimestamp(now, UTC),
            moderator_id=actor.username,
            policy=item["policy"],
        )
        conn.execute(
            insert(outbox).values(
                sender_id=item["sender_id"], payload=event.model_dump_json(), created_at=now
            )
        )
        return True

    # -- the outbox ------------------------------------------------------------------------

    def unpublished(self, limit: int = 500) -> list[dict[str, Any]]:
        query = (
            select(outbox).where(outbox.c.published_at.is_(None)).order_by(outbox.c.id).limit(limit)
        )
        with self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(query)]

    def mark_published(self, ids: Sequence[int]) -> None:
        if not ids:
            return
        with self.engine.begin() as conn:
            conn.execute(
                update(outbox).where(outbox.c.id.in_(list(ids))).values(published_at=self.clock())
            )

    # -- numbers ---------------------------------------------------------------------------

    def depth(self) -> dict[str, tuple[int, float | None]]:
        """Per policy: pending items and the oldest one's enqueue time."""
        query = (
            select(items.c.policy, func.count(), func.min(items.c.enqueued_at))
            .where(items.c.status == "pending")
            .group_by(items.c.policy)
        )
        with self.engine.connect() as conn:
            return {policy: (count, oldest) for policy, count, oldest in conn.execute(query)}

    def audit(self, limit: int = 500, offset: int = 0) -> list[dict[str, Any]]:
        query = (
            select(decisions)
            .order_by(decisions.c.decided_at.desc(), decisions.c.id.desc())
            .limit(limit)
            .offset(offset)
        )
        with self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(query)]

    def handling_times(self) -> dict[str, list[float]]:
        """Per moderator: handling seconds (claim to decision) of their labelling decisions."""
        query = select(decisions.c.moderator_id, decisions.c.handling_s).where(
            decisions.c.decision.in_(LABELLING)
        )
        found: dict[str, list[float]] = {}
        with self.engine.connect() as conn:
            for moderator, seconds in conn.execute(query):
                found.setdefault(moderator, [])
                if seconds is not None:
                    found[moderator].append(seconds)
        return found

    def erase_sender(self, sender_id: str) -> int:
        """Delete a sender's items, audit rows and unpublished labels (erasure). On SQLite
        the file is then vacuumed and its write-ahead log truncated: deleted rows otherwise
        linger in free pages and in the WAL (the erasure test reads the files' bytes)."""
        with self.engine.begin() as conn:
            gone = conn.execute(items.delete().where(items.c.sender_id == sender_id)).rowcount
            conn.execute(decisions.delete().where(decisions.c.sender_id == sender_id))
            conn.execute(outbox.delete().where(outbox.c.sender_id == sender_id))
        if self.engine.dialect.name == "sqlite":
            # VACUUM cannot run inside a transaction: an autocommit connection
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM")
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        return gone


def _label_of(policy: str, decision: Decision) -> str:
    definition = catalogue().get(policy)
    return definition.positive_label if decision == "harm" else definition.negative_label


def _audit(
    item: dict[str, Any], actor: Actor, decision: Decision, label: str | None, now: float
) -> dict[str, Any]:
    claimed_at = item.get("claimed_at")
    return {
        "item_id": item["id"],
        "kind": item["kind"],
        "message_id": item["message_id"],
        "policy": item["policy"],
        "sender_id": item["sender_id"],
        "decision": decision,
        "label": label,
        "moderator_id": actor.username,
        "decided_at": now,
        "handling_s": (now - claimed_at) if claimed_at is not None else None,
        "model_version": item["model_version"],
        "variant": item["variant"],
        "score": item["score"],
        "sent_at": item["sent_at"],
        "wave_of": None,
        "released": False,
    }
