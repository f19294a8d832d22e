"""What `python -m loadtests.bench.serving` checks and prepares before it measures: a
champion that serving answers with, no rollout or retraining in flight, the serving
processes (for CPU), and the future mails as both request bodies."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import httpx
import typer

from modstack.policy import DEFAULT_POLICY

if TYPE_CHECKING:
    from services.serving.settings import ServingSettings


def fail(message: str) -> NoReturn:
    """Print the reason in red and exit with status 1."""
    typer.secho(message, fg="red", err=True)
    raise typer.Exit(1)


def retrain_marker(monitoring_addr: str) -> tuple[bool, int] | None:
    """(a training run is in flight, training runs triggered so far) from the monitoring
    service; None when it does not answer (the benchmark then cannot tell)."""
    try:
        retrain = httpx.get(f"{monitoring_addr}/v1/status", timeout=5.0).json()["retrain"]
    except (httpx.HTTPError, KeyError, ValueError):
        return None
    triggered = sum(1 for event in retrain.get("history", []) if event.get("event") == "triggered")
    return bool(retrain.get("running")), triggered


def retrain_overlapped(before: tuple[bool, int] | None, after: tuple[bool, int] | None) -> bool:
    """A training run was in flight at either end of a run, or one was triggered during it
    (False when monitoring did not answer)."""
    return bool(before and after and (before[0] or after[0] or after[1] != before[1]))


def champion_version(settings: ServingSettings) -> str:
    """The registry's champion version of the served model (exit when there is none)."""
    from modstack.registry.aliases import get_client

    try:
        client = get_client(settings.mlflow_tracking_uri)
        champion = client.get_model_version_by_alias(settings.serving_model_name, "champion")
    except Exception as exc:
        fail(
            f"no champion of {settings.serving_model_name} in the registry at "
            f"{settings.mlflow_tracking_uri} ({type(exc).__name__}: {str(exc)[:200]}): start the "
            "stack (`make up`) and train a model (`make backfill train`) first"
        )
    return str(champion.version)


def check_serving(
    settings: ServingSettings, serving: str, version: str
) -> tuple[list[int], dict[str, str]]:
    """Serving answers with spam champion `version`, no rollout or retraining is in flight;
    returns the pids of the local processes listening on the serving port and the champion
    of every policy serving scores on each request (exit otherwise)."""
    from loadtests.bench.serving_cpu import listening_pids
    from modstack.settings import port_of

    try:
        ready = httpx.get(f"{serving}/readyz", timeout=5.0)
        body = ready.json()
    except (httpx.HTTPError, ValueError) as exc:
        fail(f"serving at {serving} does not answer ({exc}): start the stack with `make up`")
    champions = body.get("champions") or {}
    if ready.status_code != 200 or str(champions.get(DEFAULT_POLICY)) != version:
        fail(f"serving at {serving} is not ready with champion v{version}: {body}")
    health = httpx.get(f"{serving}/healthz", timeout=5.0).json()
    rollouts = [(p.get("rollout") or {}).get("status") for p in health["policies"].values()]
    if any(status in ("progressing", "paused") for status in rollouts):
        fail("a rollout is in flight: the benchmark measures champion-only serving first")
    marker = retrain_marker(settings.monitoring_addr)
    if marker and marker[0]:
        fail("a retraining run is in flight (monitoring): it takes a core; run when it ends")
    serving_pids = listening_pids(port_of(settings.serving_addr))
    if not serving_pids:
        fail(f"no local process listens on {settings.serving_addr}: the CPU cannot be measured")
    return serving_pids, {str(policy): str(v) for policy, v in champions.items() if v}


def prepare_messages(settings: ServingSettings, version: str, limit: int) -> Path:
    """Future mails as both request bodies, written to a JSON file in a new temporary folder;
    the MLflow row carries the Feast values (read once, here)."""
    from modstack.corpus import load_corpus
    from modstack.registry.aliases import get_client
    from modstack.registry.contract import TEXT_COLUMNS
    from services.serving.model_store import ModelCache
    from services.serving.online_features import OnlineFeatures

    corpus = load_corpus(settings.data_dir)
    future = corpus[(corpus["period"] == "future") & ~corpus["is_duplicate"]]
    if future.empty:
        fail("the corpus has no future-period mail: run `python -m pipelines.data`")
    future = future.sample(n=min(limit, len(future)), random_state=7)
    client = get_client(settings.mlflow_tracking_uri)
    cache_dir = settings.policy_cache_dir(DEFAULT_POLICY)
    model = ModelCache(cache_dir, client, settings.serving_model_name).load(version)
    features = OnlineFeatures(settings.feast_repo_path)
    rows = [(str(r.sender_id), str(r.subject)[:1_000], str(r.body)) for r in future.itertuples()]
    lookups = []
    for start in range(0, len(rows), 64):
        lookups += features.lookup_many(
            model.feature_service, model.feature_columns, rows[start : start + 64]
        )
    columns = [*TEXT_COLUMNS, *model.feature_columns]
    messages = [
        _message(r, row, [lookup.values.get(c) for c in model.feature_columns], columns)
        for r, row, lookup in zip(future.itertuples(), rows, lookups, strict=True)
    ]
    path = Path(tempfile.mkdtemp(prefix="bench-serving-")) / "messages.json"
    path.write_text(json.dumps(messages))
    return path


def _message(
    r: Any, row: tuple[str, str, str], values: list[Any], columns: list[str]
) -> dict[str, Any]:
    """One mail as the full path's request and as MLflow's dataframe_split row (`row`:
    sender, subject, body; `values`: the Feast features in signature order)."""
    sender, subject, body = row
    request = {
        "message_id": str(r.message_id),
        "sender_id": sender,
        "subject": subject,
        "body": body,
        "sent_at": r.sent_at.isoformat(),
    }
    return {
        "request": request,
        "mlflow": {"dataframe_split": {"columns": columns, "data": [[subject, body, *values]]}},
    }
