"""The drift report of one window against the champion's reference sample, built with Evidently.

The only module that imports Evidently (0.7 API: `Report`, `Dataset`, `DataDefinition`). It
turns a report into a plain `DriftResult`, so the service, the metrics and the tests never
touch Evidently's objects.

Methods are pinned (`DriftConfig`): Evidently's automatic choice switches from p-values (low
means drift) to distances (high means drift) above 1,000 rows, and a gauge must not change
meaning with the window size. Numeric features use the normed Wasserstein distance, low-cardinality
features (flags) the Jensen-Shannon distance, both drifted at >= 0.1.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.core.report import Snapshot
from evidently.metrics import DriftedColumnsCount, ValueDrift

log = logging.getLogger(__name__)

SCORE_COLUMN = "score"
# Columns of the reference sample that are not model inputs.
NON_FEATURE_COLUMNS = frozenset({SCORE_COLUMN, "label", "message_id", "sent_at", "sender_id"})

# Which way each allowed method points: distances grow with drift, p-values shrink.
_DISTANCE_METHODS = frozenset({"wasserstein", "jensenshannon", "psi", "kl_div", "hellinger", "ed"})
_PVALUE_METHODS = frozenset(
    {"ks", "chisquare", "z", "anderson", "mannw", "t_test", "cramer_von_mises"}
)


@dataclass(frozen=True)
class DriftConfig:
    """Pinned drift methods and thresholds (see the module docstring for why pinned)."""

    num_method: str = "wasserstein"
    num_threshold: float = 0.1
    cat_method: str = "jensenshannon"
    cat_threshold: float = 0.1
    score_method: str = "wasserstein"
    score_threshold: float = 0.1
    # Dataset drift: at least this share of the feature columns drifted.
    drift_share: float = 0.5
    # A feature whose reference values are integers with at most this many distinct values
    # (flags such as `is_html`) is categorical; anything else is numerical.
    max_categorical_levels: int = 2
    # The reference is sampled down to this size once; drift tests scale with it.
    max_reference_rows: int = 5_000
    # Prediction drift needs this many champion-scored rows in the window.
    min_score_rows: int = 30

    def __post_init__(self) -> None:
        for method in (self.num_method, self.cat_method, self.score_method):
            if method not in _DISTANCE_METHODS | _PVALUE_METHODS:
                raise ValueError(f"unsupported drift method {method!r}")


def drifted(method: str, score: float, threshold: float) -> bool:
    """Whether a score means drift under `method`."""
    return score >= threshold if method in _DISTANCE_METHODS else score < threshold


@dataclass(frozen=True)
class ColumnDrift:
    """The drift of one column as Evidently computed it."""

    column: str
    method: str
    threshold: float
    score: float
    drifted: bool


@dataclass(frozen=True)
class DriftResult:
    """The numbers of one window's report, in plain Python types."""

    rows: int
    reference_rows: int
    reference_model_version: str | None
    drift_share: float
    drifted_columns: int
    drift_detected: bool
    features: tuple[ColumnDrift, ...]
    prediction: ColumnDrift | None
    text_drift_share: float | None
    skipped_columns: tuple[str, ...] = ()
    duration_s: float = 0.0

    def summary(self) -> dict[str, Any]:
        """A JSON-ready summary (stored next to the HTML report)."""
        return {
            "rows": self.rows,
            "reference_rows": self.reference_rows,
            "reference_model_version": self.reference_model_version,
            "drift_share": self.drift_share,
            "drifted_columns": self.drifted_columns,
            "drift_detected": self.drift_detected,
            "prediction_drift_score": self.prediction.score if self.prediction else None,
            "text_drift_share": self.text_drift_share,
            "features": {
                c.column: {"method": c.method, "score": c.score, "drifted": c.drifted}
                for c in self.features
            },
            "skipped_columns": list(self.skipped_columns),
            "duration_s": round(self.duration_s, 3),
        }


@dataclass
class WindowReport:
    """A window's result and the Evidently snapshot it came from (for the HTML)."""

    result: DriftResult
    snapshot: Snapshot = field(repr=False)

    def save_html(self, path: Path) -> Path:
        """Write the Evidently HTML report; returns the path."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.snapshot.save_html(str(path))
        return path


def _is_low_cardinality(values: pd.Series, max_levels: int) -> bool:
    present = values.dropna()
    if present.empty:
        return False
    levels = present.unique()
    return len(levels) <= max_levels and all(float(v).is_integer() for v in levels)


def _feature_columns(frame: pd.DataFrame, feature_columns: Sequence[str] | None) -> list[str]:
    """The columns to monitor: the given ones (all present in `frame`, else ValueError), or
    every column of `frame` that is not a score, label or id."""
    if feature_columns is None:
        return [c for c in frame.columns if c not in NON_FEATURE_COLUMNS]
    missing = [c for c in feature_columns if c not in frame.columns]
    if missing:
        raise ValueError(f"reference sample lacks feature columns {missing}")
    return list(feature_columns)


def _numeric_sample(frame: pd.DataFrame, feature_columns: list[str], max_rows: int) -> pd.DataFrame:
    """At most `max_rows` rows (a fixed sample), the feature columns and the score if there is
    one, coerced to float64 (what is not a number becomes NaN)."""
    if len(frame) > max_rows:
        frame = frame.sample(max_rows, random_state=0)
    columns = feature_columns + ([SCORE_COLUMN] if SCORE_COLUMN in frame else [])
    return frame[columns].apply(pd.to_numeric, errors="coerce").astype("float64")


def _low_cardinality_columns(data: pd.DataFrame, columns: list[str], max_levels: int) -> list[str]:
    return [c for c in columns if _is_low_cardinality(data[c], max_levels)]


def _without(columns: list[str], dropped: Iterable[str]) -> list[str]:
    """`columns` in order, less the `dropped` ones."""
    drop = set(dropped)
    return [c for c in columns if c not in drop]


def _among(columns: list[str], wanted: Iterable[str]) -> list[str]:
    """The `wanted` ones of `columns`, in the order of `columns`."""
    keep = set(wanted)
    return [c for c in columns if c in keep]


def _has_values(data: pd.DataFrame, column: str) -> bool:
    return bool(column in data and data[column].notna().any())


class DriftReference:
    """The reference side, prepared once per champion version and reused for every window.

    Sampling, numeric coercion, the choice of each column's type and method, and Evidently's
    reference `Dataset` are all computed here, not per window.

    Args:
        frame: the reference sample (model input columns + `score`, extra columns ignored).
        feature_columns: model input columns to monitor (default: every non-score column).
        text_descriptor_columns: the features that describe the message text (lengths, URL
            counts...); their drift share is reported separately as text drift.
        model_version: the model version whose scores are in `frame`.
    """

    def __init__(
        self,
        frame: pd.DataFrame,
        feature_columns: Sequence[str] | None = None,
        text_descriptor_columns: Iterable[str] = (),
        config: DriftConfig | None = None,
        model_version: str | None = None,
    ) -> None:
        self.config = config or DriftConfig()
        self.model_version = model_version
        columns = _feature_columns(frame, feature_columns)
        data = _numeric_sample(frame, columns, self.config.max_reference_rows)
        self.empty_columns = tuple(c for c in columns if data[c].isna().all())
        self.feature_columns = _without(columns, self.empty_columns)
        self.text_descriptor_columns = _among(self.feature_columns, text_descriptor_columns)
        self.categorical = _low_cardinality_columns(
            data, self.feature_columns, self.config.max_categorical_levels
        )
        self.numerical = _without(self.feature_columns, self.categorical)
        self.has_score = _has_values(data, SCORE_COLUMN)
        score = [SCORE_COLUMN] if self.has_score else []
        self.columns = self.feature_columns + score
        self.definition = DataDefinition(
            numerical_columns=self.numerical + score, categorical_columns=self.categorical
        )
        self.frame = data[self.columns].reset_index(drop=True)
        self.dataset = Dataset.from_pandas(self.frame, data_definition=self.definition)
        if self.empty_columns:
            log.warning("reference has no values for %s: not monitored", list(self.empty_columns))

    @property
    def rows(self) -> int:
        """Rows in the (sampled) reference."""
        return len(self.frame)

    def method_for(self, column: str) -> tuple[str, float]:
        """The pinned (method, threshold) of a column."""
        if column == SCORE_COLUMN:
            return self.config.score_method, self.config.score_threshold
        if column in self.categorical:
            return self.config.cat_method, self.config.cat_threshold
        return self.config.num_method, self.config.num_threshold

    def evaluate(self, window: pd.DataFrame) -> WindowReport:
        """Run the drift report of `window` (one row per served prediction) against the
        reference. Columns the window has no values for are skipped and listed."""
        started = time.perf_counter()
        current = window.reindex(columns=self.columns)
        current = current.apply(pd.to_numeric, errors="coerce").astype("float64")
        current = current.reset_index(drop=True)
        present = [c for c in self.feature_columns if current[c].notna().any()]
        skipped = tuple(c for c in self.feature_columns if c not in present)
        if not present:
            raise ValueError("the window has no values for any monitored feature")
        score_rows = int(current[SCORE_COLUMN].notna().sum()) if self.has_score else 0
        score_drift = self.has_score and score_rows >= self.config.min_score_rows
        text_columns = [c for c in self.text_descriptor_columns if c in present]

        metrics: list[Any] = [self._count_metric(present)]
        metric_columns = present + ([SCORE_COLUMN] if score_drift else [])
        for column in metric_columns:
            method, threshold = self.method_for(column)
            metrics.append(ValueDrift(column=column, method=method, threshold=threshold))

        # Evidently's column statistics divide by the count of present values: a skipped
        # (all-missing) column makes it warn about 0/0, which says nothing here.
        with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            dataset = Dataset.from_pandas(current, data_definition=self.definition)
            snapshot = Report(metrics).run(dataset, self.dataset)
        result = self._extract(snapshot.dict(), len(current), present, text_columns, skipped)
        result = replace(result, duration_s=time.perf_counter() - started)
        return WindowReport(result=result, snapshot=snapshot)

    def _count_metric(self, columns: list[str]) -> DriftedColumnsCount:
        return DriftedColumnsCount(
            columns=columns,
            drift_share=self.config.drift_share,
            num_method=self.config.num_method,
            num_threshold=self.config.num_threshold,
            cat_method=self.config.cat_method,
            cat_threshold=self.config.cat_threshold,
        )

    def _extract(
        self,
        report: dict[str, Any],
        rows: int,
        feature_columns: list[str],
        text_columns: list[str],
        skipped: tuple[str, ...],
    ) -> DriftResult:
        """Read the values out of `snapshot.dict()["metrics"]`."""
        drifts: dict[str, ColumnDrift] = {}
        overall: dict[str, float] | None = None
        for metric in report["metrics"]:
            config, value = metric["config"], metric["value"]
            kind = config["type"]
            if kind.endswith("ValueDrift"):
                column = config["column"]
                method, threshold = config["method"], float(config["threshold"])
                score = float(value)
                drifts[column] = ColumnDrift(
                    column=column,
                    method=method,
                    threshold=threshold,
                    score=score,
                    drifted=drifted(method, score, threshold),
                )
            elif kind.endswith("DriftedColumnsCount"):  # the one over all feature columns
                overall = {k: float(v) for k, v in value.items()}
        if overall is None:
            raise ValueError("Evidently's report has no DriftedColumnsCount")
        # Text drift is the drifted share of the text-descriptor columns. Read from their
        # ValueDrift results rather than a second DriftedColumnsCount: same methods and
        # thresholds, so the same number, without Evidently testing those columns twice.
        text_drifts = [drifts[c].drifted for c in text_columns]
        share = overall["share"]
        if math.isnan(share):
            raise ValueError("Evidently returned no drift share for the window")
        return DriftResult(
            rows=rows,
            reference_rows=self.rows,
            reference_model_version=self.model_version,
            drift_share=share,
            drifted_columns=int(overall["count"]),
            drift_detected=share >= self.config.drift_share,
            features=tuple(drifts[c] for c in feature_columns),
            prediction=drifts.get(SCORE_COLUMN),
            text_drift_share=sum(text_drifts) / len(text_drifts) if text_drifts else None,
            skipped_columns=skipped,
        )
