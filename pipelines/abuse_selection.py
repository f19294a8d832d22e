"""Model selection for the abuse policy on the training period only: `python -m
pipelines.abuse_selection` prints one row per design (modstack/policies/abuse/DATA.md).

Two selection measures, neither of which reads the future holdout or the behaviour suite:

- **validation**: the pipeline's own protocol (`pipelines.fitting`): fit on the earlier 80 % of
  each class of the history comments by time, score the time-ordered tail (about 790 rows),
  place the cut-offs there with `action_thresholds` at the policy's block precision, review
  budget and traffic share; PR-AUC, ROC-AUC, recall of insults at `review` and at `block`;
- **CV**: 5-fold stratified cross-validation over all history comments (`random_state=0`), the
  out-of-fold scores pooled; PR-AUC and the recall at the review cut-off the same budget rule
  places on them (more rows than validation: 1,049 insults against about 210).

Each design is an `AbuseFeatures` configuration and a tuple of ensemble members; the features
are fitted once per fold and shared by the designs that use the same configuration.

`--protocol` checks the fitting protocol instead (`protocol_check`): the model cross-fitted on
the earlier 80 % with its cut-offs on the out-of-fold scores, against the single fit, both
measured on the tail (how cross-fitting was adopted for the served abuse model).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
import typer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold

from modstack.policy import catalogue
from modstack.registry.contract import Thresholds
from pipelines.addressee import ABUSE_MEMBERS, AbuseFeatures, NBScaler, abuse_text_pipeline
from pipelines.cutoffs import precision_at_prior, traffic_share_in_band
from pipelines.metrics import action_thresholds
from pipelines.model_config import ModelConfig
from pipelines.text_cleaning import JoinText
from pipelines.training_data import LABEL_COLUMN, corpus_rows, time_validation_split

POLICY = "abuse"
Members = tuple[tuple[tuple[str, ...], float], ...]


def _scaled(members: Members, factor: float) -> Members:
    return tuple((blocks, c * factor) for blocks, c in members)


@dataclass(frozen=True)
class Design:
    """One candidate: the features' settings and the ensemble's members."""

    name: str
    features: dict[str, Any] = field(default_factory=dict)
    members: Members = ABUSE_MEMBERS
    class_weight: str | None = None
    nb_alpha: float = 1.0

    def feature_key(self) -> str:
        return json.dumps(self.features, sort_keys=True)


DESIGNS: tuple[Design, ...] = (
    Design("current (5 members, C as chosen)"),
    Design("C x0.3", members=_scaled(ABUSE_MEMBERS, 0.3)),
    Design("C x3", members=_scaled(ABUSE_MEMBERS, 3.0)),
    Design("balanced class weights", class_weight="balanced"),
    Design("NB alpha 2", nb_alpha=2.0),
    Design("+ addressee/counts member again", members=(*ABUSE_MEMBERS, ABUSE_MEMBERS[3])),
    Design("fuzzy lexicon", features={"fuzzy_lexicon": True}),
    Design("fuzzy lexicon, C x0.3", {"fuzzy_lexicon": True}, _scaled(ABUSE_MEMBERS, 0.3)),
    Design(
        "fuzzy lexicon + addressee/counts again",
        {"fuzzy_lexicon": True},
        (*ABUSE_MEMBERS, ABUSE_MEMBERS[3]),
    ),
    Design(
        "fuzzy lexicon + addressee/counts again, C x0.3",
        {"fuzzy_lexicon": True},
        _scaled((*ABUSE_MEMBERS, ABUSE_MEMBERS[3]), 0.3),
    ),
    Design("fuzzy lexicon + your-a frame", {"fuzzy_lexicon": True, "your_copula": True}),
)


@dataclass
class Budget:
    """The policy's cut-off rule: block precision, review budget, harm share in traffic."""

    block_precision: float
    review_budget: float
    traffic_share: float

    def recalls(self, y: npt.NDArray[np.int_], scores: npt.NDArray[np.float64]) -> dict[str, float]:
        """Cut-offs placed on these scores and the recall of insults at each."""
        cut = action_thresholds(
            y, scores, scores, self.review_budget, self.traffic_share, self.block_precision
        )
        positives = scores[y == 1]
        return {
            "review": cut.review,
            "block": cut.block,
            "recall_at_review": float((positives >= cut.review).mean()),
            "recall_at_block": float((positives >= cut.block).mean()),
        }


def _member_logits(
    features: AbuseFeatures,
    x_fit: sp.csr_matrix,
    y_fit: npt.NDArray[np.int_],
    x_score: sp.csr_matrix,
    design: Design,
    seed: int,
) -> npt.NDArray[np.float64]:
    """The mean of the design's members' logits on `x_score` (as `AddresseeEnsemble`)."""
    total = np.zeros(x_score.shape[0])
    for blocks, c in design.members:
        columns = features.block_columns(blocks)
        scaler = NBScaler(alpha=design.nb_alpha).fit(x_fit[:, columns], y_fit)
        model = LogisticRegression(
            C=c, max_iter=5000, random_state=seed, class_weight=design.class_weight
        )
        model.fit(scaler.transform(x_fit[:, columns]), y_fit)
        total += model.decision_function(scaler.transform(x_score[:, columns]))
    return total / len(design.members)


def _scores_by_design(
    designs: Sequence[Design],
    fit_texts: list[str],
    y_fit: npt.NDArray[np.int_],
    score_texts: list[str],
    seed: int,
) -> dict[str, npt.NDArray[np.float64]]:
    """Each design fitted on `fit_texts` and scored on `score_texts` (logits)."""
    out: dict[str, npt.NDArray[np.float64]] = {}
    fitted: dict[str, tuple[AbuseFeatures, sp.csr_matrix, sp.csr_matrix]] = {}
    for design in designs:
        key = design.feature_key()
        if key not in fitted:
            features = AbuseFeatures(you_sentences=True, **design.features).fit(fit_texts)
            fitted[key] = (
                features,
                features.transform(fit_texts),
                features.transform(score_texts),
            )
        features, x_fit, x_score = fitted[key]
        out[design.name] = _member_logits(features, x_fit, y_fit, x_score, design, seed)
    return out


def _ranking(y: npt.NDArray[np.int_], scores: npt.NDArray[np.float64]) -> dict[str, float]:
    return {
        "pr_auc": float(average_precision_score(y, scores)),
        "roc_auc": float(roc_auc_score(y, scores)),
    }


def history_comments(
    config: ModelConfig | None = None,
) -> tuple[list[str], npt.NDArray[np.int_], list[str], npt.NDArray[np.int_]]:
    """(fit texts, labels, validation texts, labels): the abuse training period split as
    `pipelines.fitting` splits it, the text joined as the served model joins it."""
    from pipelines.train import FUTURE_START, TrainConfig

    config = config or ModelConfig()
    history = corpus_rows(end=FUTURE_START, policy=POLICY)
    fit_part, val_part = time_validation_split(history, TrainConfig().validation_fraction)
    join = JoinText(config.max_body_chars)
    return (
        list(join.transform(fit_part)),
        fit_part[LABEL_COLUMN].to_numpy(dtype=int),
        list(join.transform(val_part)),
        val_part[LABEL_COLUMN].to_numpy(dtype=int),
    )


def select(designs: Sequence[Design], cv_folds: int = 5, seed: int = 42) -> list[dict[str, Any]]:
    """One row per design: validation and (with `cv_folds` > 1) CV measures."""
    from scipy.special import expit

    definition = catalogue().get(POLICY)
    budget = Budget(
        definition.block_precision, definition.review_budget, definition.traffic_positive_share
    )
    fit_texts, y_fit, val_texts, y_val = history_comments()
    started = time.perf_counter()
    val_scores = _scores_by_design(designs, fit_texts, y_fit, val_texts, seed)
    rows: dict[str, dict[str, Any]] = {}
    for design in designs:
        scores = expit(val_scores[design.name])
        rows[design.name] = {
            "design": design.name,
            "val": {**_ranking(y_val, scores), **budget.recalls(y_val, scores)},
        }
    print(f"validation: {len(y_val)} rows, {y_val.sum()} insults", flush=True)
    if cv_folds > 1:
        texts = fit_texts + val_texts
        y = np.concatenate([y_fit, y_val])
        oof = {design.name: np.zeros(len(y)) for design in designs}
        folds = StratifiedKFold(cv_folds, shuffle=True, random_state=0).split(texts, y)
        for number, (train_rows, test_rows) in enumerate(folds, 1):
            fold = _scores_by_design(
                designs,
                [texts[i] for i in train_rows],
                y[train_rows],
                [texts[i] for i in test_rows],
                seed,
            )
            for name, scores in fold.items():
                oof[name][test_rows] = scores
            print(f"CV fold {number}/{cv_folds} done", flush=True)
        for design in designs:
            scores = expit(oof[design.name])
            rows[design.name]["cv"] = {**_ranking(y, scores), **budget.recalls(y, scores)}
    print(f"{len(designs)} designs in {time.perf_counter() - started:.0f} s", flush=True)
    return list(rows.values())


def _cutoff_check(
    budget: Budget,
    cut: Thresholds,
    y: npt.NDArray[np.int_],
    scores: npt.NDArray[np.float64],
) -> dict[str, float]:
    """What cut-offs `cut` do on labelled `scores`: recall of insults at review and block,
    share of traffic in [review, block) at the policy's insult share, block precision there."""
    positives = scores[y == 1]
    return {
        "recall_at_review": float((positives >= cut.review).mean()),
        "recall_at_block": float((positives >= cut.block).mean()),
        "band_traffic_share": traffic_share_in_band(y, scores, cut, budget.traffic_share),
        "block_precision_at_prior": precision_at_prior(y, scores, cut.block, budget.traffic_share),
    }


def protocol_check(folds: int = 5, seed: int = 42) -> dict[str, Any]:
    """Cross-fitting against the single fit, nested in the history: both fitted on the earlier
    80 % of the history comments (`history_comments`), measured on the time-ordered tail.

    - single: `abuse_text_pipeline()` fitted once, its cut-offs placed on the tail (what the
      pipeline served before; optimistic for the cut-offs, which see the rows they are judged
      on);
    - cross-fitted: `abuse_text_pipeline(folds=folds)`, its cut-offs placed on the pooled
      out-of-fold scores of the fit rows, then applied unchanged to the tail it never saw.

    For each: tail PR-AUC / ROC-AUC, its cut-offs, and what they do on the tail (and, for the
    cross-fitted model, on the out-of-fold rows they were placed on).
    """
    from scipy.special import expit

    definition = catalogue().get(POLICY)
    budget = Budget(
        definition.block_precision, definition.review_budget, definition.traffic_positive_share
    )
    fit_texts, y_fit, val_texts, y_val = history_comments()

    def place(y: npt.NDArray[np.int_], scores: npt.NDArray[np.float64]) -> Thresholds:
        return action_thresholds(
            y,
            scores,
            scores,
            budget.review_budget,
            budget.traffic_share,
            budget.block_precision,
        )

    out: dict[str, Any] = {"fit_rows": len(y_fit), "tail_rows": len(y_val)}
    started = time.perf_counter()
    single = abuse_text_pipeline(seed).fit(fit_texts, y_fit)
    tail = single.predict_proba(val_texts)[:, 1]
    cut = place(y_val, tail)
    out["single"] = {
        **_ranking(y_val, tail),
        "review": cut.review,
        "block": cut.block,
        "tail": _cutoff_check(budget, cut, y_val, tail),
        "seconds": time.perf_counter() - started,
    }
    started = time.perf_counter()
    cross = abuse_text_pipeline(seed, folds=folds).fit(fit_texts, y_fit)
    oof = expit(cross[-1].oof_decision_)
    tail = cross.predict_proba(val_texts)[:, 1]
    cut = place(y_fit, oof)
    out["cross_fitted"] = {
        **_ranking(y_val, tail),
        "oof": {**_ranking(y_fit, oof), **_cutoff_check(budget, cut, y_fit, oof)},
        "review": cut.review,
        "block": cut.block,
        "tail": _cutoff_check(budget, cut, y_val, tail),
        "tail_placed": {"review": place(y_val, tail).review, "block": place(y_val, tail).block},
        "seconds": time.perf_counter() - started,
    }
    return out


def table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as a Markdown table."""
    lines = [
        "| design | val. PR-AUC | val. ROC-AUC | val. review / block | val. recall at review "
        "| val. recall at block | CV PR-AUC | CV recall at review |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        val, cv = row["val"], row.get("cv")
        cv_cells = f"{cv['pr_auc']:.4f} | {cv['recall_at_review']:.3f}" if cv else "- | -"
        lines.append(
            f"| {row['design']} | {val['pr_auc']:.4f} | {val['roc_auc']:.4f} | "
            f"{val['review']:.3f} / {val['block']:.3f} | {val['recall_at_review']:.3f} | "
            f"{val['recall_at_block']:.3f} | {cv_cells} |"
        )
    return "\n".join(lines)


def main(
    cv: Annotated[int, typer.Option(help="CV folds over the history comments (0: none)")] = 5,
    only: Annotated[
        list[str] | None, typer.Option(help="run only the designs with these names")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="also write the rows as JSON here")] = None,
    protocol: Annotated[
        bool,
        typer.Option(
            "--protocol",
            help="instead: cross-fitting against the single fit, nested in the history",
        ),
    ] = False,
) -> None:
    """Print the table of designs on validation (and CV); the holdout is not read."""
    if protocol:
        check = protocol_check(folds=cv if cv > 1 else 5)
        print(json.dumps(check, indent=2))
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(check, indent=2) + "\n")
        return
    designs = [d for d in DESIGNS if not only or d.name in only]
    if not designs:
        raise typer.BadParameter(f"no design named {only}; known: {[d.name for d in DESIGNS]}")
    rows = select(designs, cv_folds=cv)
    print(table(rows))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    typer.run(main)
