"""Dead letters on disk: expiry, erasure by sender, and no connection left open."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from modstack.deadletter_store import DeadLetterStore
from modstack.events import DeadLetter


def test_dead_letters_on_disk_expire_and_are_erased_by_sender(tmp_path: Path) -> None:
    store = DeadLetterStore(tmp_path)
    old = DeadLetter.of("messages.v1", b"x", "bad", key="a@x").model_copy(
        update={"failed_at": datetime.now(UTC) - timedelta(days=40)}
    )
    store.add([old, DeadLetter.of("labels.v1", b"secret of b", "bad", key="b@x")])
    assert store.expire(14) == 1
    assert [d.key for d in store.read()] == ["b@x"]
    assert store.erase_sender("b@x") == 1
    assert store.read() == []
    assert b"secret of b" not in store.path.read_bytes()


def test_erase_sender_without_a_file_erases_nothing_and_creates_nothing(tmp_path: Path) -> None:
    store = DeadLetterStore(tmp_path)
    assert store.erase_sender("a@x") == 0
    assert store.read() == [] and store.expire(1) == 0
    assert not store.path.exists()


def test_erase_sender_keeps_other_senders(tmp_path: Path) -> None:
    store = DeadLetterStore(tmp_path)
    store.add([DeadLetter.of("messages.v1", b"x", "bad", key=k) for k in ("a@x", "b@x", "a@x")])
    assert store.erase_sender("a@x") == 2
    assert [d.key for d in store.read()] == ["b@x"]
    assert [d.key for d in store.read("b@x")] == ["b@x"]


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_no_connection_is_left_open(tmp_path: Path) -> None:
    store = DeadLetterStore(tmp_path)

    def open_handles() -> int:
        fds = Path("/proc/self/fd")
        targets = []
        for fd in fds.iterdir():
            try:
                targets.append(os.readlink(fd))
            except OSError:
                continue
        return sum(1 for t in targets if t.startswith(str(store.path)))

    store.add([DeadLetter.of("messages.v1", b"x", "bad", key="a@x")])
    store.read()
    store.read("a@x")
    store.expire(1)
    store.erase_sender("a@x")
    assert open_handles() == 0
