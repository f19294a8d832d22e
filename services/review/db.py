"""The review service's tables, on SQLAlchemy Core: one definition for SQLite (the embedded
local default) and PostgreSQL (compose, k8s). Times that are compared or ordered are epoch
seconds (floats): the same arithmetic on both databases, no timezone handling in SQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    inspect,
)

from modstack.sql import create_tables

metadata = MetaData()

ID = 256  # modstack.events.Id's bound

items = Table(
    "review_items",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),  # review | appeal
    Column("message_id", String(ID), nullable=False),
    Column("policy", String(64), nullable=False),
    Column("sender_id", String(ID), nullable=False),
    Column("subject", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("text_hash", String(64), nullable=False),
    Column("sent_at", String(40), nullable=False),
    Column("score", Float, nullable=False),
    Column("model_version", String(128), nullable=False),
    Column("variant", String(16), nullable=False),
    # the other variant's score when both champion and challenger sent the message to review
    Column("other_score", Float),
    # what serving saw (nullable: added after the first schema; see `_add_missing_columns`)
    Column("review_cutoff", Float),
    Column("block_cutoff", Float),
    Column("features", Text),  # JSON {name: value or null}
    Column("priority", Float, nullable=False),
    Column("enqueued_at", Float, nullable=False),
    Column("status", String(16), nullable=False),  # pending | decided
    Column("escalated", Boolean, nullable=False, default=False),
    Column("claimed_by", String(64)),
    Column("claimed_at", Float),
    Column("claim_expires_at", Float),
    Column("decision", String(16)),
    Column("label", String(64)),
    Column("decided_by", String(64)),
    Column("decided_at", Float),
    # appeals: the public id the client app polls, the sender's words, the client app
    Column("appeal_id", String(64), unique=True),
    Column("appeal_reason", Text),
    Column("appeal_client", String(128)),
    Column("released_at", Float),
    UniqueConstraint("message_id", "policy", "kind", name="review_items_once"),
)
Index("review_items_pending", items.c.status, items.c.policy, items.c.priority)
Index("review_items_sender", items.c.sender_id, items.c.enqueued_at)
Index("review_items_wave", items.c.text_hash, items.c.policy, items.c.status)

decisions = Table(
    "review_decisions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("item_id", Integer, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("message_id", String(ID), nullable=False),
    Column("policy", String(64), nullable=False),
    Column("sender_id", String(ID), nullable=False),
    Column("decision", String(16), nullable=False),
    Column("label", String(64)),
    Column("moderator_id", String(64), nullable=False),
    Column("decided_at", Float, nullable=False),
    Column("handling_s", Float),
    Column("model_version", String(128), nullable=False),
    Column("variant", String(16), nullable=False),
    Column("score", Float, nullable=False),
    Column("sent_at", String(40), nullable=False),
    Column("wave_of", Integer),  # the item the moderator decided, when decided with its wave
    Column("released", Boolean, nullable=False, default=False),
)
Index("review_decisions_time", decisions.c.decided_at)

outbox = Table(
    "review_label_outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("sender_id", String(ID), nullable=False),
    Column("payload", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("published_at", Float),
)
Index("review_outbox_unpublished", outbox.c.published_at)

accounts = Table(
    "review_accounts",
    metadata,
    Column("username", String(64), primary_key=True),
    Column("role", String(16), nullable=False),
    Column("password_hash", String(256), nullable=False),
    Column("token_hash", String(64), unique=True),
)

login_failures = Table(
    "review_login_failures",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("username", String(64), nullable=False),
    Column("failed_at", Float, nullable=False),
)
Index("review_login_failures_user", login_failures.c.username, login_failures.c.failed_at)


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def make_engine(url: str) -> Engine:
    """An engine on `url` with the tables created (SQLite: WAL, shared across threads)."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)
    create_tables(metadata, engine)
    _add_missing_columns(engine)
    return engine


def _add_missing_columns(engine: Engine) -> None:
    """Add the nullable columns a newer schema has and an existing database lacks.

    Hand-written rather than Alembic: the only change so far is nullable columns added to
    one table, which `ALTER TABLE ... ADD COLUMN` does on SQLite and PostgreSQL alike; a
    migration tool earns its place with the first change that is not additive."""
    present = {c["name"] for c in inspect(engine).get_columns(items.name)}
    with engine.begin() as conn:
        for column in items.columns:
            if column.name not in present and column.nullable:
                kind = column.type.compile(dialect=engine.dialect)
                conn.exec_driver_sql(f'ALTER TABLE {items.name} ADD COLUMN "{column.name}" {kind}')
