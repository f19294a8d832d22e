"""A policy's holdout scored through the running serving API (`POST /v1/moderate`), not in
process: what the served model, its features and thresholds do on data it never trained on.

For each holdout message of the policy (the corpus's future period, the rows carrying the
policy's label) one request as a new sender; the policy's score and action are read from the
answer. Prints and writes `var/run/results/holdout-api-<policy>.json`: PR-AUC, ROC-AUC, the
share of each class per action, the model version, and how many requests failed.

Usage: `python -m loadtests.bench.policy_holdout --policy abuse [--workers 4] [--limit N]`
(needs `make up` and a champion of the policy).
"""

from __future__ import annotations

import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any

import httpx
import numpy as np
import typer
from rich.console import Console
from sklearn.metrics import average_precision_score, roc_auc_score

from modstack.corpus import FUTURE_START
from modstack.policy import catalogue
from modstack.results import Result, ResultTable, provenance, write_result
from modstack.settings import get_settings

console = Console()


def _request(row: Any) -> dict[str, str]:
    """One holdout message as a new sender sends it (a fresh sender id per message)."""
    return {
        "message_id": f"{row.message_id}~{uuid.uuid4().hex[:8]}",
        "sender_id": f"holdout-{uuid.uuid4().hex[:12]}@example.org",
        "subject": str(row.subject)[:1_000],
        "body": str(row.body),
        "sent_at": row.sent_at.isoformat(),
    }


def score_through_api(
    serving: str, rows: list[Any], policy: str, workers: int
) -> tuple[list[float | None], list[str | None], Counter[str]]:
    """The policy's score and action for each row (None where the request failed), and the
    model versions that answered."""
    versions: Counter[str] = Counter()

    def one(row: Any) -> tuple[float | None, str | None]:
        try:
            response = http.post("/v1/moderate", json=_request(row))
        except httpx.HTTPError:
            return None, None
        if response.status_code != 200:
            return None, None
        decision = response.json()["policies"].get(policy)
        if decision is None:
            return None, None
        versions[decision["model_version"]] += 1
        return float(decision["score"]), str(decision["action"])

    with (
        httpx.Client(base_url=serving, timeout=30) as http,
        ThreadPoolExecutor(workers) as pool,
    ):
        answers = list(pool.map(one, rows))
    return [a[0] for a in answers], [a[1] for a in answers], versions


def _action_table(y: np.ndarray, actions: list[str], labels: tuple[str, str]) -> ResultTable:
    rows = []
    for value, name in ((1, labels[0]), (0, labels[1])):
        mine = [a for a, t in zip(actions, y, strict=True) if t == value]
        counts = Counter(mine)
        rows.append(
            [name, len(mine)]
            + [round(counts[a] / max(len(mine), 1), 4) for a in ("allow", "review", "block")]
        )
    return ResultTable(
        "share of each class per action", ["class", "messages", "allow", "review", "block"], rows
    )


def run(policy: str, workers: int = 4, limit: int | None = None) -> Result:
    """Score the policy's holdout through serving; the result (also written to a file)."""
    from pipelines.training_data import corpus_rows

    settings = get_settings()
    definition = catalogue().get(policy)
    holdout = corpus_rows(start=FUTURE_START, policy=policy)
    if limit:
        holdout = holdout.head(limit)
    rows = list(holdout.itertuples())
    console.print(f"{len(rows)} {policy} holdout messages -> {settings.serving_addr}/v1/moderate")
    scores, actions, versions = score_through_api(settings.serving_addr, rows, policy, workers)
    answered = [i for i, s in enumerate(scores) if s is not None]
    if not answered:
        raise SystemExit(
            f"no answer carried policy {policy!r}: is the stack up (`make up`) and does "
            f"{definition.registered_model} have a champion?"
        )
    y = holdout["y"].to_numpy()[answered]
    s = np.array([scores[i] for i in answered])
    pr_auc, roc_auc = float(average_precision_score(y, s)), float(roc_auc_score(y, s))
    result = Result(
        name=f"holdout-api-{policy}",
        title=f"The {policy} holdout through POST /v1/moderate",
        command=f"python -m loadtests.bench.policy_holdout --policy {policy}",
        tables=[
            ResultTable(
                f"{policy}: ranking of the served model on its holdout",
                ["messages", "failed", "positive share", "PR-AUC", "ROC-AUC", "model versions"],
                [
                    [
                        len(rows),
                        len(rows) - len(answered),
                        round(float(y.mean()), 4),
                        round(pr_auc, 4),
                        round(roc_auc, 4),
                        ", ".join(f"v{v}: {n}" for v, n in sorted(versions.items())),
                    ]
                ],
            ),
            _action_table(y, [actions[i] or "" for i in answered], definition.labels),
        ],
        data={"pr_auc": pr_auc, "roc_auc": roc_auc, "versions": dict(versions)},
        provenance=provenance(),
    )
    path = write_result(result)
    console.print(f"PR-AUC {pr_auc:.4f}, ROC-AUC {roc_auc:.4f} on {len(answered)}; wrote {path}")
    return result


cli = typer.Typer(add_completion=False, help=__doc__.splitlines()[0])


@cli.command()
def main(
    policy: Annotated[str, typer.Option(help="the policy whose holdout is scored")] = "abuse",
    workers: Annotated[int, typer.Option(help="requests in flight")] = 4,
    limit: Annotated[int, typer.Option(help="score only the first N (0: all)")] = 0,
) -> None:
    """Score a policy's holdout through the running serving API."""
    run(policy, workers, limit or None)


if __name__ == "__main__":
    cli()
