"""The spam candidate's head rows (`ModelConfig.head_crops`): a spam mail's subject and opening
sentence are short spam for the short-text model, which otherwise sees short spam only as
random windows of long mail; the long-text model never sees them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.model import TextPlusSenderClassifier, head_rows
from pipelines.model_config import ModelConfig

FILLER = (
    "the committee met on tuesday and the minutes were filed with the other papers in the "
    "usual folder, next to the reports from the previous quarter and the notes on the budget"
)
HAM_SENTENCES = (
    "the build fails on the new compiler because the linker flags changed",
    "i moved the config parsing into its own module and added a test",
    "the kernel patch applies cleanly but the driver still needs work",
    "we should tag the release after the documentation is merged",
)
SPAM_OPENINGS = (
    "Claim your free prize today!",
    "Win cash now, claim your free prize!",
    "Exclusive offer: claim your free gift card today!",
    "Act now and win a free cruise today!",
)
CHAT = (
    "see you at the station at six",
    "did anyone watch the match last night",
    "thanks for dinner, it was lovely",
    "running late, start without me",
)


def _corpus(n: int = 40) -> tuple[pd.DataFrame, np.ndarray]:
    """Ham mails (technical), spam mails (a spammy subject and opening, then long plain
    filler) and subject-less chat comments (ham)."""
    rows: list[dict[str, str]] = []
    labels: list[int] = []
    for i in range(n):
        ham = HAM_SENTENCES[i % 4]
        rows.append({"subject": f"build question {i}", "body": f"{ham}. {FILLER}. {ham}."})
        labels.append(0)
        opening = SPAM_OPENINGS[i % 4]
        rows.append({"subject": opening, "body": f"{opening} {FILLER}. {FILLER}. {FILLER}."})
        labels.append(1)
        rows.append({"subject": "", "body": CHAT[i % 4]})
        labels.append(0)
    return pd.DataFrame(rows), np.asarray(labels)


def test_head_rows_are_the_subject_and_the_opening_sentence_of_the_chosen_mails() -> None:
    frame = pd.DataFrame(
        {
            "subject": ["Re: [list] Cheap meds", "patch", "", "Hi"],
            "body": [
                "Buy now. Lowest prices online! Order today and save.",
                "Looks good to me. Merging.",
                "a comment without a subject.",
                "Hello there, this opening runs on for far too many words to be kept whole "
                "by the cap on the number of words in one head row at all",
            ],
        }
    )
    labels = np.array([1, 0, 0, 1])
    rows = frame["subject"].str.strip().ne("").to_numpy() & (labels == 1)
    config = ModelConfig(head_max_words=10)
    texts, head_y, source = head_rows(frame, labels, rows, config)
    # subject tags go as in serving's cleaning; sentences are added until 4 words; a one-word
    # subject ("Hi") is no head; the last opening is cut at 10 words
    assert texts == [
        "Cheap meds",
        "Buy now. Lowest prices online!",
        "Hello there, this opening runs on for far too many",
    ]
    assert head_y.tolist() == [1, 1, 1]
    assert source.tolist() == [0, 0, 3]


def _config(heads: str, spam_crop_weight: float = -1.0) -> ModelConfig:
    """Design S's short-text settings (long-text model on the mails alone, 4 crops of 2-15
    words), no abstention cap (no thresholds are fitted here)."""
    return ModelConfig(
        long_model_mail_only=True,
        crops_per_text=4,
        crop_max_words=15,
        abstain_min_known=0,
        head_crops=heads,
        spam_crop_weight=spam_crop_weight,
    )


@pytest.fixture(scope="module")
def fitted() -> dict[str, TextPlusSenderClassifier]:
    frame, labels = _corpus()
    out = {}
    for name, heads in (("without", ""), ("with", "spam")):
        out[name] = TextPlusSenderClassifier([], _config(heads)).fit(frame, labels)
    return out


def test_spam_heads_teach_the_short_text_model_what_a_short_spam_says(
    fitted: dict[str, TextPlusSenderClassifier],
) -> None:
    short_spam = ["claim your free prize today", "win a free gift card now"]
    without = fitted["without"].text_logit(short_spam)
    with_heads = fitted["with"].text_logit(short_spam)
    assert (with_heads > without + 0.2).all(), (without, with_heads)
    # chat (the comments' kind of text) stays on the ham side
    chat = fitted["with"].text_logit(["see you at the match tonight"])
    assert (chat < 0).all()


def test_spam_heads_leave_the_long_text_model_alone(
    fitted: dict[str, TextPlusSenderClassifier],
) -> None:
    without, with_heads = fitted["without"], fitted["with"]
    assert without.coef_long_ is not None and with_heads.coef_long_ is not None
    np.testing.assert_array_equal(without.coef_long_, with_heads.coef_long_)
    assert without.intercept_long_ == with_heads.intercept_long_
    assert not np.array_equal(without.coef_, with_heads.coef_)


def test_spam_crop_weight_zero_drops_the_spam_windows_from_the_short_text_model() -> None:
    frame, labels = _corpus(20)
    dropped = TextPlusSenderClassifier([], _config("spam", spam_crop_weight=0.0))
    kept = TextPlusSenderClassifier([], _config("spam"))
    dropped.fit(frame, labels)
    kept.fit(frame, labels)
    # filler windows of spam mail no longer teach that plain committee prose is spam
    plain = ["the minutes were filed with the other papers"]
    assert dropped.text_logit(plain)[0] < kept.text_logit(plain)[0]
