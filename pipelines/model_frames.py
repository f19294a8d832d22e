"""Model-contract frames as the gate and the thresholds need them: the same rows as cold
senders (`cold_start`), messages as new senders send them (`new_sender_frame`) and short
windows cut from labelled mail (`short_windows`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd

from modstack.registry.contract import TEXT_COLUMNS
from pipelines.model_config import SENDER_PREFIX
from pipelines.text_cleaning import clean_text, crop_windows


def cold_start(frame: pd.DataFrame) -> pd.DataFrame:
    """The same rows as an unknown sender gets them: every sender_* column NaN (what the
    online store returns for a sender it never saw); the on-demand text features stay."""
    out = frame.copy()
    for column in out.columns:
        if str(column).startswith(SENDER_PREFIX):
            out[column] = np.nan
    return out


def new_sender_frame(
    subjects: Sequence[str], bodies: Sequence[str], feature_columns: Sequence[str]
) -> pd.DataFrame:
    """Messages as a sender the online store never saw gets them: every sender_* column NaN,
    the on-demand text features computed by the same function Feast's view calls."""
    from features.text import text_features

    columns = list(feature_columns)
    rows = []
    for subject, body in zip(subjects, bodies, strict=True):
        computed = text_features(subject, body)
        rows.append(
            {"subject": subject, "body": body, **{c: computed.get(c, np.nan) for c in columns}}
        )
    frame = pd.DataFrame(rows, columns=[*TEXT_COLUMNS, *columns])
    frame[columns] = frame[columns].astype(np.float64)
    return frame


def short_windows(
    subjects: Sequence[str],
    bodies: Sequence[str],
    labels: npt.ArrayLike,
    feature_columns: Sequence[str],
    seed: int,
) -> tuple[pd.DataFrame, npt.NDArray[np.int_]]:
    """Short messages cut from labelled mail, as new senders would send them: 3 random windows
    of 5-40 words of each cleaned text (the body, no subject), with the mail's label; for the
    block cut-off's check on short text (`pipelines.metrics.action_thresholds`)."""
    texts = [clean_text(s, b) for s, b in zip(subjects, bodies, strict=True)]
    crops, crop_y, _ = crop_windows(texts, np.asarray(labels, dtype=int), 3, 5, 40, seed)
    return new_sender_frame([""] * len(crops), crops, feature_columns), crop_y
