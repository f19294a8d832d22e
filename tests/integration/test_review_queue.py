"""The review queue against both databases it runs on: SQLite (the local default) and a real
PostgreSQL (compose, k8s), one parametrized fixture, the same assertions."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from sqlalchemy import Engine, text

from modstack.events import LabelEvent, ReviewRequest
from services.review.accounts import Accounts, LockedOut
from services.review.db import make_engine, metadata
from services.review.queue import (
    Actor,
    ClaimConflict,
    ItemNotFound,
    NotPermitted,
    ReviewQueue,
    normalised_text_hash,
)
from services.review.settings import DEV_ACCOUNTS
from tests.support.clock import ManualClock
from tests.support.postgres import running_postgres

pytestmark = pytest.mark.integration

ALICE = Actor("alice", "moderator")
BOB = Actor("bob", "moderator")
ADMIN = Actor("admin", "admin")
LEASE_S = 60.0
FLOOR_S = 3600.0
SENT = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with running_postgres() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'review.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres_url")
    engine = make_engine(url)
    yield engine
    metadata.drop_all(engine)
    engine.dispose()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(SENT.timestamp() + 86_400)


@pytest.fixture
def queue(engine: Engine, clock: ManualClock) -> ReviewQueue:
    return ReviewQueue(engine, lease_s=LEASE_S, age_floor_s=FLOOR_S, clock=clock)


def request_for(
    message_id: str,
    *,
    policy: str = "spam",
    score: float = 0.6,
    sender: str = "s1",
    body: str = "cheap pills",
    variant: str = "champion",
) -> ReviewRequest:
    return ReviewRequest(
        message_id=message_id,
        sender_id=sender,
        policy=policy,
        subject="hello",
        body=body,
        sent_at=SENT,
        score=score,
        model_version="7",
        variant=variant,  # type: ignore[arg-type]
    )


def test_the_same_message_and_policy_twice_is_one_item(queue: ReviewQueue) -> None:
    assert queue.add_request(request_for("m1"))
    assert not queue.add_request(request_for("m1"))
    assert queue.add_request(request_for("m1", policy="abuse"))
    assert len(queue.pending(ALICE)) == 2
    assert {r["policy"] for r in queue.pending(ALICE)} == {"spam", "abuse"}
    assert [r["policy"] for r in queue.pending(ALICE, "abuse")] == ["abuse"]


def test_priority_orders_by_closeness_to_the_cutoff_and_disagreement(
    queue: ReviewQueue, clock: ManualClock
) -> None:
    queue.add_request(request_for("far", score=0.95))
    clock.now += 1
    queue.add_request(request_for("near", score=0.52))
    clock.now += 1
    queue.add_request(request_for("split", score=0.8))
    # the challenger saw it very differently: disagreement lifts it above "near"
    queue.add_request(request_for("split", score=0.1, variant="challenger"))
    order = [r["message_id"] for r in queue.pending(ALICE)]
    assert order == ["split", "near", "far"]
    split = queue.pending(ALICE)[0]
    assert split["other_score"] == pytest.approx(0.1)


def test_the_age_floor_puts_old_items_first_whatever_their_priority(
    queue: ReviewQueue, clock: ManualClock
) -> None:
    queue.add_request(request_for("old-but-clear", score=0.99))
    clock.now += FLOOR_S + 1
    queue.add_request(request_for("new-and-unsure", score=0.5))
    assert [r["message_id"] for r in queue.pending(ALICE)] == ["old-but-clear", "new-and-unsure"]
    # the age counts from serving's request: consumed late, it is still the oldest
    late = request_for("requested-long-ago", score=0.99).model_copy(
        update={"requested_at": datetime.fromtimestamp(clock.now - 2 * FLOOR_S, UTC)}
    )
    queue.add_request(late)
    assert queue.pending(ALICE)[0]["message_id"] == "requested-long-ago"


def test_a_claim_holds_the_item_until_its_lease_expires(
    queue: ReviewQueue, clock: ManualClock
) -> None:
    queue.add_request(request_for("m1"))
    item_id = queue.pending(ALICE)[0]["id"]
    assert queue.claim(item_id, ALICE)["claimed_by"] == "alice"
    with pytest.raises(ClaimConflict, match="claimed by alice"):
        queue.claim(item_id, BOB)
    with pytest.raises(ClaimConflict, match="claimed by alice"):
        queue.decide(item_id, BOB, "harm")
    clock.now += LEASE_S + 1
    with pytest.raises(ClaimConflict, match="expired"):
        queue.decide(item_id, ALICE, "harm")
    assert queue.claim(item_id, BOB)["claimed_by"] == "bob"
    with pytest.raises(ClaimConflict):
        queue.release(item_id, ALICE)
    assert queue.release(item_id, BOB)["claimed_by"] is None


def test_concurrent_claims_have_one_winner(queue: ReviewQueue) -> None:
    queue.add_request(request_for("m1"))
    item_id = queue.pending(ALICE)[0]["id"]
    moderators = [Actor(f"mod{i}", "moderator") for i in range(6)]
    winners: list[str] = []
    barrier = threading.Barrier(len(moderators))

    def race(actor: Actor) -> None:
        barrier.wait()
        try:
            queue.claim(item_id, actor)
            winners.append(actor.username)
        except ClaimConflict:
            pass

    threads = [threading.Thread(target=race, args=(m,)) for m in moderators]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(winners) == 1
    assert queue.get(item_id)["claimed_by"] == winners[0]


def test_a_decision_is_audited_and_its_label_goes_to_the_outbox(
    queue: ReviewQueue, clock: ManualClock
) -> None:
    queue.add_request(request_for("m1", policy="abuse"))
    item_id = queue.pending(ALICE)[0]["id"]
    queue.claim(item_id, ALICE)
    clock.now += 12.5
    decided = queue.decide(item_id, ALICE, "harm")
    assert decided.item_ids == [item_id] and decided.label == "abuse"
    with pytest.raises(ClaimConflict, match="decided by alice"):
        queue.claim(item_id, BOB)
    (audit,) = queue.audit()
    assert (audit["moderator_id"], audit["decision"], audit["label"]) == ("alice", "harm", "abuse")
    assert audit["model_version"] == "7" and audit["sent_at"] == SENT.isoformat()
    assert audit["handling_s"] == pytest.approx(12.5)
    (row,) = queue.unpublished()
    event = LabelEvent.model_validate(json.loads(row["payload"]))
    assert (event.source, event.moderator_id, event.policy, event.label) == (
        "moderator",
        "alice",
        "abuse",
        "abuse",
    )
    assert event.labeled_at.timestamp() == pytest.approx(clock.now)
    queue.mark_published([row["id"]])
    assert queue.unpublished() == []
    assert queue.handling_times() == {"alice": [pytest.approx(12.5)]}


def test_skip_gives_back_and_escalate_hands_to_admins(queue: ReviewQueue) -> None:
    queue.add_request(request_for("m1"))
    item_id = queue.pending(ALICE)[0]["id"]
    queue.claim(item_id, ALICE)
    queue.decide(item_id, ALICE, "skip")
    assert queue.get(item_id)["claimed_by"] is None
    queue.claim(item_id, ALICE)
    queue.decide(item_id, ALICE, "escalate")
    assert queue.pending(ALICE) == []
    assert [r["id"] for r in queue.pending(ADMIN)] == [item_id]
    with pytest.raises(NotPermitted):
        queue.claim(item_id, BOB)
    queue.claim(item_id, ADMIN)
    assert queue.decide(item_id, ADMIN, "ok").label == "ham"
    assert queue.unpublished() and len(queue.audit()) == 2


def test_a_wave_is_decided_together_and_each_item_audited(queue: ReviewQueue) -> None:
    for i in range(4):
        # the same text up to case, punctuation and spacing
        queue.add_request(request_for(f"w{i}", sender=f"s{i}", body=f"CHEAP   pills!!{'.' * i}"))
    queue.add_request(request_for("other", body="a different text"))
    lead = next(r for r in queue.pending(ALICE) if r["message_id"] == "w0")
    queue.claim(lead["id"] + 1, BOB)  # one copy is held by bob: not decided for him
    queue.claim(lead["id"], ALICE)
    assert len(queue.wave(lead, ALICE)) == 2
    decided = queue.decide(lead["id"], ALICE, "harm", wave=True)
    assert len(decided.item_ids) == 3
    audit = queue.audit()
    assert len(audit) == 3 and {a["moderator_id"] for a in audit} == {"alice"}
    assert sorted(a["wave_of"] for a in audit if a["wave_of"]) == [lead["id"], lead["id"]]
    assert len(queue.unpublished()) == 3
    assert {r["message_id"] for r in queue.pending(ALICE)} == {"w1", "other"}


def test_an_overturned_appeal_releases_the_message(queue: ReviewQueue) -> None:
    appeal: dict[str, Any] = {
        "client": "demo",
        "message_id": "blocked-1",
        "sender_id": "s9",
        "policy": "spam",
        "subject": "hi",
        "body": "not spam, really",
        "sent_at": SENT,
        "model_version": "7",
        "score": 0.99,
    }
    item, created = queue.add_appeal(**appeal, reason="this is my invoice")
    again, created_again = queue.add_appeal(**appeal, reason="again")
    assert created and not created_again and again["appeal_id"] == item["appeal_id"]
    with pytest.raises(ItemNotFound):
        queue.appeal(item["appeal_id"], "another-client")
    queue.claim(item["id"], BOB)
    decided = queue.decide(item["id"], BOB, "ok")
    assert decided.released and decided.label == "ham"
    assert queue.appeal(item["appeal_id"], "demo")["released_at"] is not None
    assert queue.audit()[0]["released"]


def test_history_and_erasure_are_per_sender(queue: ReviewQueue) -> None:
    queue.add_request(request_for("a", sender="s1"))
    queue.add_request(request_for("b", sender="s1", policy="abuse"))
    queue.add_request(request_for("c", sender="s2"))
    first = next(r for r in queue.pending(ALICE) if r["message_id"] == "a")
    assert [h["message_id"] for h in queue.history(first)] == ["b"]
    assert queue.erase_sender("s1") == 2
    assert [r["message_id"] for r in queue.pending(ALICE)] == ["c"]
    assert set(queue.depth()) == {"spam"}


def test_accounts_hash_passwords_lock_out_and_resolve_tokens(
    engine: Engine, clock: ManualClock
) -> None:
    cheap = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)
    accounts = Accounts(engine, lockout_failures=3, lockout_window_s=900, clock=clock, hasher=cheap)
    accounts.seed(DEV_ACCOUNTS)
    accounts.seed(DEV_ACCOUNTS)  # idempotent
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT password_hash, token_hash FROM review_accounts")).all()
    assert all(h.startswith("$argon2") for h, _ in stored)
    assert all(len(t) == 64 and "dev" not in t for _, t in stored)
    assert accounts.login("alice", "alice-dev-password") == ALICE
    assert accounts.by_token("dev-review-token-admin") == ADMIN
    assert accounts.by_token("nope") is None
    for _ in range(3):
        assert accounts.login("bob", "wrong") is None
    with pytest.raises(LockedOut):
        accounts.login("bob", "bob-dev-password")
    clock.now += 901
    assert accounts.login("bob", "bob-dev-password") == BOB
    token = accounts.new_token("bob")
    assert accounts.by_token(token) == BOB and accounts.by_token("dev-review-token-bob") is None


def test_normalised_text_hash_ignores_case_spacing_and_punctuation() -> None:
    assert normalised_text_hash("Hi", "CHEAP  pills!!") == normalised_text_hash("hi", "cheap pills")
    assert normalised_text_hash("Hi", "cheap pills") != normalised_text_hash("Hi", "cheap pill")


def test_an_item_keeps_what_serving_saw_and_why_it_went_to_review(
    queue: ReviewQueue, clock: ManualClock
) -> None:
    from services.review.api import item_out

    request = request_for("m-why").model_copy(
        update={
            "review_cutoff": 0.31,
            "block_cutoff": 0.83,
            "features": {"sender_msgs_total": 3.0, "sender_spam_labels_30d": None},
        }
    )
    assert queue.add_request(request)
    pending = queue.pending(ADMIN, None, 10)
    (row,) = [queue.get(r["id"]) for r in pending if r["message_id"] == "m-why"]
    item = item_out(row, clock())
    assert (item.review_cutoff, item.block_cutoff) == (0.31, 0.83)
    assert item.features == {"sender_msgs_total": 3.0, "sender_spam_labels_30d": None}


def test_an_existing_database_gains_the_newer_nullable_columns(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.sqlite3"
    make_engine(f"sqlite:///{path}").dispose()
    with sqlite3.connect(path) as db:  # the first schema had none of these
        for column in ("review_cutoff", "block_cutoff", "features"):
            db.execute(f"ALTER TABLE review_items DROP COLUMN {column}")
    engine = make_engine(f"sqlite:///{path}")
    queue = ReviewQueue(engine, lease_s=LEASE_S, age_floor_s=FLOOR_S)
    assert queue.add_request(request_for("m-old").model_copy(update={"review_cutoff": 0.2}))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT review_cutoff FROM review_items")).scalar() == 0.2
