"""Dead letters in a database (DEADLETTER_DATABASE_URL): the same results as the default SQLite
file, on that file and on a real PostgreSQL 15, and shared by every process that has the URL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from modstack.deadletter_store import DeadLetterStore
from modstack.events import DeadLetter
from tests.support.postgres import fresh_database, running_postgres

pytestmark = [pytest.mark.integration, pytest.mark.backends_chosen]

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def letter(key: str | None, failed_at: datetime = NOW, raw: bytes = b"\xff not json") -> DeadLetter:
    return DeadLetter.of("messages.v1", raw, "bad", key=key).model_copy(
        update={"failed_at": failed_at}
    )


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[str]:
    with running_postgres() as url:
        yield url


@pytest.fixture
def postgres_database(postgres_server: str) -> str:
    """A fresh, empty PostgreSQL database for one test."""
    return fresh_database(postgres_server, "deadletters")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Each backend: "" is the default (the SQLite file under DATA_DIR), else a PostgreSQL."""
    if request.param == "sqlite":
        return ""
    return str(request.getfixturevalue("postgres_database"))


def both(tmp_path: Path, database_url: str) -> tuple[DeadLetterStore, DeadLetterStore]:
    """The store on the backend under test and one on the default file, in separate folders."""
    return DeadLetterStore(tmp_path / "db", database_url), DeadLetterStore(tmp_path / "file", "")


def stored_rows(store: DeadLetterStore, key: str) -> int:
    """Rows of `key` in the table itself (not through the store's reads)."""
    with sa.create_engine(store.url).connect() as connection:
        return int(
            connection.execute(
                sa.text("SELECT count(*) FROM deadletters WHERE key = :key"), {"key": key}
            ).scalar_one()
        )


def test_append_and_read_give_what_the_file_gives(tmp_path: Path, database_url: str) -> None:
    in_db, in_file = both(tmp_path, database_url)
    batches = [
        [letter("b@x", raw=b"first"), letter("a@x", raw=b"second")],
        [letter(None, raw=b"no key"), letter("a@x", raw=b"\x00\x01 third")],
    ]
    for batch in batches:
        for store in (in_db, in_file):
            store.add(batch)
    store.add([])  # nothing to store is no transaction and no error
    assert in_db.read() == in_file.read()
    assert [d.original for d in in_db.read()] == ["first", "second", "no key", "\x00\x01 third"]
    assert in_db.read("a@x") == in_file.read("a@x")
    assert [d.original for d in in_db.read("a@x")] == ["second", "\x00\x01 third"]
    assert in_db.read("nobody@x") == [] == in_file.read("nobody@x")


def test_erase_by_key_deletes_the_rows_and_keeps_the_others(
    tmp_path: Path, database_url: str
) -> None:
    in_db, in_file = both(tmp_path, database_url)
    batch = [letter("gone@x", raw=b"secret"), letter("kept@x"), letter(None), letter("gone@x")]
    for store in (in_db, in_file):
        store.add(batch)
    assert in_db.erase_sender("gone@x") == 2 == in_file.erase_sender("gone@x")
    assert in_db.read() == in_file.read()
    assert [d.key for d in in_db.read()] == ["kept@x", None]
    assert stored_rows(in_db, "gone@x") == 0
    assert in_db.erase_sender("gone@x") == 0
    assert [d.key for d in in_db.read("kept@x")] == ["kept@x"]


def test_expiry_compares_instants_like_the_file(tmp_path: Path, database_url: str) -> None:
    in_db, in_file = both(tmp_path, database_url)
    cutoff = NOW - timedelta(days=14)
    batch = [
        letter("old@x", NOW - timedelta(days=40)),
        letter("just-before@x", cutoff - timedelta(microseconds=1)),
        letter("at-cutoff@x", cutoff),
        letter("after@x", cutoff + timedelta(milliseconds=500)),
        # the cutoff's instant written at +02:00: as old as at-cutoff@x, so kept
        letter("offset@x", cutoff.astimezone(timezone(timedelta(hours=2)))),
        # 11:00 at -02:00 is 13:00 UTC: after the cutoff, though its wall clock is before it
        letter("west@x", (cutoff + timedelta(hours=1)).astimezone(timezone(timedelta(hours=-2)))),
        letter("recent@x", NOW - timedelta(days=1)),
    ]
    for store in (in_db, in_file):
        store.add(batch)
    assert in_db.expire(0, now=NOW) == 0  # 0 keeps everything
    assert in_db.expire(14, now=NOW) == 2 == in_file.expire(14, now=NOW)
    assert in_db.read() == in_file.read()
    assert [d.key for d in in_db.read()] == [
        "at-cutoff@x",
        "after@x",
        "offset@x",
        "west@x",
        "recent@x",
    ]
    assert in_db.expire(14, now=NOW) == 0
    assert in_db.expire(1, now=NOW) == 4
    assert [d.key for d in in_db.read()] == ["recent@x"]


def test_the_environment_puts_every_process_on_one_table_and_nothing_on_disk(
    tmp_path: Path, postgres_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEADLETTER_DATABASE_URL", postgres_database)
    # two processor pods and the forget command: each its own DATA_DIR, one database
    pods = [DeadLetterStore(tmp_path / name) for name in ("pod-a", "pod-b", "forget")]
    pods[0].add([letter("gone@x"), letter("kept@x")])
    pods[1].add([letter("gone@x", raw=b"on the other pod")])
    assert [d.key for d in pods[2].read()] == ["gone@x", "kept@x", "gone@x"]
    assert pods[2].erase_sender("gone@x") == 2
    assert [d.key for d in pods[0].read()] == ["kept@x"]
    assert pods[1].expire(14, now=NOW + timedelta(days=15)) == 1
    assert pods[0].read() == []
    assert not any((tmp_path / name).exists() for name in ("pod-a", "pod-b", "forget"))
    assert "postgresql" in repr(pods[0])


def test_replicas_starting_together_create_the_table_once_and_lose_no_letter(
    tmp_path: Path, postgres_database: str
) -> None:
    # without the guard in `_create_table` a CREATE loses the race with a duplicate pg_type or
    # pg_class row (8 of 8 runs of this test, measured)
    replicas = [DeadLetterStore(tmp_path / f"pod-{i}", postgres_database) for i in range(8)]
    start = threading.Barrier(len(replicas))
    errors: list[BaseException] = []

    def first_letter(i: int) -> None:
        start.wait()
        try:
            replicas[i].add([letter(f"k{i}@x")])
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=first_letter, args=(i,)) for i in range(len(replicas))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert sorted(str(d.key) for d in replicas[0].read()) == [f"k{i}@x" for i in range(8)]
