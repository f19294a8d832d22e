"""What training, serving and monitoring agree on about a registered model version.

A version of `spam-classifier` is an MLflow sklearn model (cloudpickle) whose `predict_proba`
takes a DataFrame with the text columns and the FeatureService's feature columns (NaN when
missing) and returns [P(ham), P(spam)]. Its metadata carries the action thresholds and the
feature contract; its run carries the drift reference sample.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modstack.events import Action

TEXT_COLUMNS: tuple[str, ...] = ("subject", "body")

# Keys of the model's MLflow metadata (`log_model(..., metadata=...)`).
META_THRESHOLDS = "thresholds"  # {"block": float, "review": float}
META_FEATURE_SERVICE = "feature_service"  # Feast FeatureService name, e.g. "spam_model_v1"
META_FEATURE_COLUMNS = "feature_columns"  # ordered list of the non-text input columns

# Artifact path, inside the model version's run, of the drift reference sample: a parquet of
# feature columns + `score` (+ `label`) drawn from the training data.
REFERENCE_ARTIFACT = "reference/reference.parquet"


@dataclass(frozen=True)
class Thresholds:
    """Score cut-offs chosen on validation data: block where precision >= 0.99,
    review down to where recall >= 0.95."""

    block: float
    review: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.review <= self.block <= 1.0:
            raise ValueError(f"need 0 <= review <= block <= 1, got {self}")

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> Thresholds:
        """Read the thresholds stored with a model version."""
        raw = metadata[META_THRESHOLDS]
        return cls(block=float(raw["block"]), review=float(raw["review"]))

    def to_metadata(self) -> dict[str, float]:
        """The form stored in the model's metadata."""
        return {"block": self.block, "review": self.review}

    def action_for(self, score: float) -> Action:
        """`block` at or above the block cut-off, `review` at or above review, else `allow`."""
        if score >= self.block:
            return "block"
        if score >= self.review:
            return "review"
        return "allow"
