"""Score a candidate design on the development set of short messages (model selection).

`python -m pipelines.devset [--set name=value ...]` fits the candidate as the behaviour test
does (the corpus history, text features, thresholds from its validation tail), then scores
`pipelines/devsets/short_messages.yaml` as new senders at its own cut-offs and prints what
share of everyday messages and of short spam each action gets, beside the validation ranking.
`--set` overrides a `ModelConfig` field, e.g. `--set abstain_min_known=20`, and `--sources
email,comments` the policy's training sources: the rows of ADR 0011's rounds are runs of this
command.

The dev set chooses between designs; it is never training data, and the behavioural suite in
tests/model/behaviour is the held-out test of the one chosen.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
import typer
import yaml
from rich.console import Console
from rich.table import Table

from modstack.registry.contract import Thresholds
from pipelines.behaviour import Message
from pipelines.gate import new_sender_scorer
from pipelines.model_config import ModelConfig

DEVSET_PATH = Path(__file__).parent / "devsets" / "short_messages.yaml"


@dataclass(frozen=True)
class DevsetResult:
    """Share of each class's dev messages per action, and the highest everyday-message scores."""

    shares: dict[str, dict[str, float]]
    top_ham: list[tuple[float, str]]
    # ROC-AUC of the dev spam against the dev ham (ranking alone, whatever the cut-offs)
    auc: float = float("nan")
    # share of dev ham at or above the score that lets SPAM_ALLOWED of the dev spam through:
    # the least everyday ham any review cut-off can flag without allowing more short spam
    ham_flagged_floor: float = float("nan")


# the short spam a review cut-off may allow in `DevsetResult.ham_flagged_floor` (the behaviour
# suite's rule allows 10 %; 8 % leaves room for a different sample)
SPAM_ALLOWED = 0.08


def ham_flagged_floor(ham: npt.ArrayLike, spam: npt.ArrayLike, allowed: float) -> float:
    """Share of `ham` scores at or above the cut-off below which `allowed` of the `spam` scores
    fall (the lowest share of everyday ham review-or-block can hold at that spam allowed)."""
    spam_sorted = np.sort(np.asarray(spam, dtype=float))
    cut = spam_sorted[int(np.floor(allowed * len(spam_sorted)))]
    return float((np.asarray(ham, dtype=float) >= cut).mean())


def load_devset(path: Path = DEVSET_PATH) -> dict[str, list[dict[str, str]]]:
    """The dev set: {"ham": [{subject, body}, ...], "spam": [...]}."""
    data = yaml.safe_load(path.read_text())
    return {kind: list(data[kind]) for kind in ("ham", "spam")}


def score_devset(
    model: Any, thresholds: Thresholds, feature_columns: list[str], path: Path = DEVSET_PATH
) -> DevsetResult:
    """Each dev message scored as a new sender (the gate's behaviour scorer); action shares
    per class at `thresholds`."""
    score = new_sender_scorer(model, thresholds, feature_columns)
    shares: dict[str, dict[str, float]] = {}
    top_ham: list[tuple[float, str]] = []
    scores: dict[str, list[float]] = {}
    for kind, messages in load_devset(path).items():
        decisions = score(
            [
                Message(m.get("subject", ""), m["body"], f"dev-{kind}-{i}")
                for i, m in enumerate(messages)
            ]
        )
        actions = Counter(d.action for d in decisions)
        scores[kind] = [d.score for d in decisions]
        shares[kind] = {a: actions[a] / len(decisions) for a in ("block", "review", "allow")}
        if kind == "ham":
            ranked = sorted(zip(decisions, messages, strict=True), key=lambda dm: -dm[0].score)
            top_ham = [(d.score, m["body"]) for d, m in ranked[:5]]
    ham, spam = np.asarray(scores["ham"]), np.asarray(scores["spam"])
    auc = float(((spam[:, None] > ham[None, :]) + 0.5 * (spam[:, None] == ham[None, :])).mean())
    return DevsetResult(shares, top_ham, auc, ham_flagged_floor(ham, spam, SPAM_ALLOWED))


# `--set` values by the field's annotation (a string: model_config uses postponed annotations)
_PARSERS: dict[str, Callable[[str], Any]] = {
    "int": int,
    "float": float,
    "bool": lambda v: v.lower() == "true",
}


def _config(overrides: list[str]) -> ModelConfig:
    types = {f.name: f.type for f in fields(ModelConfig) if f.name != "extra"}
    values: dict[str, Any] = {}
    for item in overrides:
        name, sep, raw = item.partition("=")
        if not sep or name not in types:
            raise typer.BadParameter(
                f"--set {item!r}: expected name=value, name one of {sorted(types)}"
            )
        values[name] = _PARSERS.get(str(types[name]), str)(raw)
    return replace(ModelConfig(), **values)


cli = typer.Typer(add_completion=False, help=__doc__.splitlines()[0])


@cli.command()
def main(
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="a ModelConfig field, name=value")
    ] = None,
    sources: Annotated[
        str | None,
        typer.Option(
            help="the corpus sources to train on, e.g. email,comments (default: the policy's)"
        ),
    ] = None,
) -> None:
    """Fit the candidate on the corpus history and score the dev set as new senders."""
    from modstack.corpus import FUTURE_START
    from modstack.names import FEATURE_SERVICE_V1
    from pipelines.train import fit_candidate
    from pipelines.training_data import corpus_rows, with_features

    config = _config(set_ or [])
    picked = sources.split(",") if sources else None
    rows = corpus_rows(end=FUTURE_START, sources=picked)
    history = with_features(rows, FEATURE_SERVICE_V1, "text")
    fitted = fit_candidate(history, config, validation_fraction=0.2)
    result = score_devset(fitted.pipeline, fitted.thresholds, list(history.feature_columns))
    cold = fitted.params["validation_cold"]
    table = Table(
        title=f"dev set, new senders (block {fitted.thresholds.block:.3f}, "
        f"review {fitted.thresholds.review:.3f})"
    )
    for column in ("messages", "block", "review", "allow"):
        table.add_column(column, justify="right" if column != "messages" else "left")
    for kind, share in result.shares.items():
        table.add_row(kind, *(f"{100 * share[a]:.1f} %" for a in ("block", "review", "allow")))
    console = Console()
    console.print(table)
    console.print(
        f"validation PR-AUC / recall@P>=0.99: warm {fitted.validation.metrics['pr_auc']:.4f} / "
        f"{fitted.validation.metrics['recall_at_p99']:.3f}, cold {cold['pr_auc']:.4f} / "
        f"{cold['recall_at_p99']:.3f}"
    )
    val = dict.fromkeys(("email.pr_auc", "email.recall_at_p99"), float("nan"))
    val["group.comments.review_share"] = float("nan")
    val.update(fitted.validation.metrics)
    console.print(
        f"validation e-mail only PR-AUC / recall@P>=0.99: {val['email.pr_auc']:.4f}"
        f" / {val['email.recall_at_p99']:.3f}; comments review share "
        f"{100 * val['group.comments.review_share']:.1f} %; "
        f"dev ROC-AUC (spam vs ham) {result.auc:.4f}; at best "
        f"{100 * result.ham_flagged_floor:.1f} % of dev ham flagged with "
        f"{100 * SPAM_ALLOWED:.0f} % of dev spam allowed"
    )
    console.print("highest everyday-message scores:")
    for score, body in result.top_ham:
        console.print(f"  {score:.3f}  {body[:70]}")


if __name__ == "__main__":
    cli()
