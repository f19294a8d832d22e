"""A model's offline expectation: how it behaved on its gate's holdout, for the canary to compare.

Training writes `offline_expectation.json` into the candidate's MLflow run: the block and review
rates its thresholds give on the holdout, and the histogram of its holdout scores on the same
0.05-wide bins serving exports (`serving_score`). The canary compares the challenger's live
behaviour with this, its own expectation, instead of with the champion's: a model retrained on
drifted traffic is meant to behave differently from the champion, not from itself.

When the gate compared the candidate with a champion, the artifact also holds that champion's
version and block rate on the same holdout: the canary then checks the block-rate *shift*
against the champion on the same live messages, which the traffic mix moves for both models
alike, instead of the bare block rate, which a clustered stream moves by tens of points.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

EXPECTATION_ARTIFACT = "offline_expectation.json"
# Same bins as serving's score histogram (0.05 wide): live and offline counts line up.
SCORE_EDGES: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(21))


@dataclass(frozen=True)
class OfflineExpectation:
    """Block / review rate and the score histogram of a model on its holdout."""

    block_rate: float
    review_rate: float
    edges: list[float]
    counts: list[int]
    rows: int
    champion_version: str | None = None  # the champion the gate compared with, if any
    champion_block_rate: float | None = None  # its block rate on the same holdout

    def with_champion(self, version: str, block_rate: float) -> OfflineExpectation:
        """The same expectation, with the champion the gate scored on the same holdout."""
        return replace(self, champion_version=str(version), champion_block_rate=block_rate)

    def to_json(self) -> dict[str, Any]:
        """The artifact's JSON form."""
        body: dict[str, Any] = {
            "block_rate": self.block_rate,
            "review_rate": self.review_rate,
            "score_histogram": {"edges": self.edges, "counts": self.counts},
            "rows": self.rows,
        }
        if self.champion_version is not None:
            body["champion"] = {
                "version": self.champion_version,
                "block_rate": self.champion_block_rate,
            }
        return body

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> OfflineExpectation:
        """Parse the artifact (ValueError naming the missing field)."""
        try:
            histogram = body["score_histogram"]
            champion = body.get("champion") or {}
            return cls(
                block_rate=float(body["block_rate"]),
                review_rate=float(body["review_rate"]),
                edges=[float(e) for e in histogram["edges"]],
                counts=[int(c) for c in histogram["counts"]],
                rows=int(body["rows"]),
                champion_version=champion.get("version"),
                champion_block_rate=champion.get("block_rate"),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{EXPECTATION_ARTIFACT} lacks {exc}") from exc

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def expectation_from_scores(
    scores: Sequence[float], block: float, review: float
) -> OfflineExpectation:
    """The expectation of a model with cut-offs `block` / `review` scoring `scores`."""
    import numpy as np

    values = np.clip(np.asarray(scores, dtype=float), 0.0, 1.0)
    if values.size == 0:
        raise ValueError("an offline expectation needs at least one holdout score")
    # numpy's last bin is closed on the right, so a score of exactly 1.0 is counted.
    counts, _ = np.histogram(values, bins=np.asarray(SCORE_EDGES))
    blocked = values >= block
    reviewed = (values >= review) & ~blocked
    return OfflineExpectation(
        block_rate=float(blocked.mean()),
        review_rate=float(reviewed.mean()),
        edges=list(SCORE_EDGES),
        counts=[int(c) for c in counts],
        rows=int(values.size),
    )


def log_expectation(expectation: OfflineExpectation) -> None:
    """Write the artifact into the active MLflow run."""
    import mlflow

    mlflow.log_dict(expectation.to_json(), EXPECTATION_ARTIFACT)


def load_run_expectation(client: Any, run_id: str) -> OfflineExpectation | None:
    """The expectation logged by run `run_id`; None when it has none."""
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(run_id, EXPECTATION_ARTIFACT, tmp)
        except (MlflowException, OSError):
            return None
        return OfflineExpectation.from_json(json.loads(Path(path).read_text()))


def load_expectation(client: Any, model_name: str, version: str) -> OfflineExpectation | None:
    """The expectation logged by the run behind `version`; None when that run has none
    (trained before the artifact existed)."""
    run_id = client.get_model_version(model_name, str(version)).run_id
    return load_run_expectation(client, run_id) if run_id else None
