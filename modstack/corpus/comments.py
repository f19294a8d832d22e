"""The insult data's comments as messages on the e-mail corpus's timeline.

The comments (2012) and the e-mails (2000-2002) were written ten years apart. To replay them as
one platform's traffic, each comment file is re-timed onto one period of the e-mail timeline:
`train.csv` onto the history period (where the first models are trained and validated),
`test_with_solutions.csv` onto the future period (the live traffic of the demo and the holdout
of the first evaluation). The mapping is by quantile: the comment at rank q of its file (by its
own date) takes the time of the e-mail at quantile q of the period, so comments keep their order
and arrive at the e-mails' density (the e-mail timeline is very uneven: most of the future
falls in seven weeks). A comment without a date takes a deterministic pseudo-random quantile (a
hash of its id) and is marked `repaired="retimed,undated"`; dated ones are marked `"retimed"`,
and `date_header` keeps the original date.

Each comment is a message from a sender seen once (the data names no authors). For the spam
policy every comment is ham (an insult is not spam; the few that advertise are listed in
`SPAM_LOOKING_COMMENTS` and left out rather than guessed at); for the abuse policy its label is
the data's own (`label_abuse`: "abuse" or "ok"). E-mails have no abuse label (`label_abuse` "").
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

COMMENTS_VERSION = 2  # bump when the mapping below changes: cached corpora are rebuilt
COMMENT_SENDER_DOMAIN = "comments.invalid"  # RFC 2606: never a real domain
COMMENT_GROUP_PREFIX = "comments-"  # groups "comments-train" and "comments-test"
# Comments that advertise (found by a scan for links, "click", "buy", "free", "earn" and phone
# numbers among the non-insults, then read by hand; modstack/policies/abuse/DATA.md): neither
# honest ham nor labelled spam, so they are left out of the messages rather than guessed at.
SPAM_LOOKING_COMMENTS: frozenset[str] = frozenset(
    {
        # clear spam or ads
        "insults-train-00124",
        "insults-train-01197",
        "insults-train-01923",
        "insults-train-03665",
        "insults-test-01030",
        "insults-test-01372",
        "insults-test-02523",
        "insults-test-02625",
        # borderline self-promotion
        "insults-train-00620",
        "insults-train-02495",
        "insults-train-03828",
        "insults-train-03889",
        "insults-train-03937",
        "insults-train-00718",
    }
)


def is_comment(sender_ids: pd.Series) -> pd.Series:
    """Which messages are comments (their senders are on the comments' reserved domain; a
    replayed repeat keeps its sender, so this holds for the stream's copies too)."""
    return sender_ids.astype(str).str.endswith("@" + COMMENT_SENDER_DOMAIN)


def from_sources(rows: pd.DataFrame, sources: tuple[str, ...]) -> pd.DataFrame:
    """The rows that come from `sources` ("email", "comments")."""
    comment = is_comment(rows["sender_id"])
    keep = (comment & ("comments" in sources)) | (~comment & ("email" in sources))
    return rows[keep]


def _unit_interval(ids: pd.Series) -> np.ndarray:
    """A stable pseudo-random number in [0, 1) per id (sha1, so the same on every machine)."""
    return np.array(
        [int(hashlib.sha1(i.encode()).hexdigest()[:12], 16) / 16**12 for i in ids], dtype=float
    )


def retime(sent_at: pd.Series, ids: pd.Series, period_times: pd.Series) -> pd.Series:
    """Each row takes the time at its own quantile of `period_times` (see the module doc)."""
    if period_times.empty:
        raise ValueError("no e-mails in the period to re-time the comments onto")
    quantile = pd.Series(_unit_interval(ids), index=sent_at.index)
    dated = sent_at.notna()
    if dated.any():
        ranks = sent_at[dated].rank(method="first")
        quantile[dated] = (ranks - 0.5) / int(dated.sum())
    nanos = period_times.astype("int64").to_numpy()
    times = np.quantile(nanos, quantile.to_numpy()).round(-9)  # whole seconds
    return pd.Series(pd.to_datetime(times.astype("int64"), utc=True), index=sent_at.index)


def comment_messages(comments: pd.DataFrame, periods: dict[str, pd.Series]) -> pd.DataFrame:
    """Rows in the corpus's message columns (plus `label_abuse`) for the comments.

    Args:
        comments: `modstack.corpus.insults.load_comments()` (comment_id, split, sent_at, text,
            insult).
        periods: per split, the e-mails' `sent_at` of the period it is re-timed onto:
            {"train": history times, "test": future times}.
    """
    kept = comments[~comments["comment_id"].isin(SPAM_LOOKING_COMMENTS)]
    parts = []
    for split, period_times in periods.items():
        rows = kept[kept["split"] == split]
        sent_at = retime(rows["sent_at"], rows["comment_id"], period_times)
        original = rows["sent_at"]
        parts.append(
            pd.DataFrame(
                {
                    "message_id": rows["comment_id"],
                    "header_message_id": "",
                    "sender_id": rows["comment_id"] + "@" + COMMENT_SENDER_DOMAIN,
                    "sender_domain": COMMENT_SENDER_DOMAIN,
                    "subject": "",
                    "body": rows["text"],
                    "sent_at": sent_at,
                    "label": "ham",
                    "label_abuse": np.where(rows["insult"] == 1, "abuse", "ok"),
                    "group": COMMENT_GROUP_PREFIX + split,
                    "is_html": False,
                    "repaired": np.where(original.notna(), "retimed", "retimed,undated"),
                    "date_header": original.dt.strftime("%Y%m%d%H%M%SZ").fillna(""),
                    "source_path": f"insults/{split}#" + rows["comment_id"],
                }
            )
        )
    return pd.concat(parts, ignore_index=True)
