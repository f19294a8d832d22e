"""The rollout state: which challenger gets how much traffic, and every decision taken so far.

One source of truth that every serving replica follows: tags on the registered model
`spam-classifier` in the MLflow registry, next to the `champion` / `challenger` aliases.

- `rollout.state`: the current state as one JSON document (written in a single tag write, so a
  replica never sees the weight of one decision with the status of another).
- `rollout.history.NNNN`: one JSON event per tag (who or what, when, which metric values).

Why not one tag for everything: the registry's SQL schema stores tag values as VARCHAR(5000)
(MLflow's API accepts up to 100,000 characters, SQLite ignores the column size, PostgreSQL does
not), and a rollout's history with check values outgrows 5,000 characters within a few steps.
Each event stays far below that limit, and only the controller writes (single writer), so
appending a tag per event is safe.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from modstack.names import REGISTERED_MODEL

RolloutMode = Literal["canary", "shadow"]
RolloutStatus = Literal["idle", "progressing", "paused", "promoted", "rolled_back"]

STATE_TAG = "rollout.state"
HISTORY_TAG_PREFIX = "rollout.history."
# PostgreSQL column size of registered_model_tags.value (mlflow/store/model_registry/dbmodels).
TAG_VALUE_MAX_CHARS = 5000
REASON_MAX_CHARS = 1000
_HISTORY_KEY = re.compile(r"^rollout\.history\.(\d+)$")

# Statuses in which the challenger takes part in serving.
ACTIVE_STATUSES: tuple[RolloutStatus, ...] = ("progressing", "paused")


def utc_now() -> datetime:
    """Timezone-aware now (every timestamp in the state is UTC)."""
    return datetime.now(UTC)


class RolloutEvent(BaseModel):
    """One step or decision of a rollout, as shown by `modstack rollout status`."""

    at: datetime = Field(default_factory=utc_now)
    actor: str  # "controller", "admin:http", "admin:cli", ...
    action: str  # start, extend, hold, advance, promote, rollback, abort, pause, resume, ...
    step: int
    weight_percent: float
    status: RolloutStatus
    reason: str = ""
    # Analysis results: {check name: {"value", "threshold", "passed", ...}} and raw counts.
    checks: dict[str, dict[str, Any]] = Field(default_factory=dict)
    metrics: dict[str, float | None] = Field(default_factory=dict)


class RolloutState(BaseModel):
    """Where the rollout of a challenger stands. `weight_percent` is the share of senders routed
    to the challenger (canary) or also scored by it (shadow)."""

    rollout_id: str = ""
    challenger_version: str | None = None
    champion_version: str | None = None  # champion when the rollout started
    weight_percent: float = Field(default=0.0, ge=0.0, le=100.0)
    mode: RolloutMode = "canary"
    status: RolloutStatus = "idle"
    step: int = 0  # index into `steps` of the step being analysed
    steps: list[float] = Field(default_factory=list)
    failures: int = 0  # failed analyses so far, counted against the failure limit
    # This rollout's policy (None: the controller's settings), so a demo or an urgent fix can
    # run with its own pace without restarting the controller.
    interval_s: float | None = Field(default=None, gt=0)
    failure_limit: int | None = Field(default=None, ge=1)
    min_requests: int | None = Field(default=None, ge=1)
    # Share of requests (percent) that both variants score, the one that does not answer in
    # the shadow: the canary's comparisons are then between two models on the same messages.
    paired_percent: float | None = Field(default=None, ge=0.0, le=100.0)
    # Windows of the current step judged inconclusive so far (each extends the step by one
    # interval), and the bound after which the rollout is held for a human.
    extensions: int = Field(default=0, ge=0)
    max_extensions: int | None = Field(default=None, ge=0)
    reason: str = ""
    started_at: datetime | None = None
    step_started_at: datetime | None = None  # start of the current step's analysis window
    updated_at: datetime = Field(default_factory=utc_now)
    # Bumped on every save: replicas and the controller can tell a new decision from a re-read.
    revision: int = 0
    history: list[RolloutEvent] = Field(default_factory=list)

    @property
    def active(self) -> bool:
        """True while the challenger takes traffic (progressing or paused)."""
        return self.status in ACTIVE_STATUSES and self.challenger_version is not None

    def routed_weight(self) -> float:
        """The weight serving should apply: 0 unless the rollout is active."""
        return self.weight_percent if self.active else 0.0

    def record(self, actor: str, action: str, reason: str = "", **extra: Any) -> RolloutEvent:
        """Append an event describing the state as it is now (call after changing it)."""
        event = RolloutEvent(
            actor=actor,
            action=action,
            step=self.step,
            weight_percent=self.weight_percent,
            status=self.status,
            reason=reason,
            **extra,
        )
        self.history.append(event)
        return event

    def summary(self) -> dict[str, Any]:
        """The state without its history (what `rollout.state` holds; the reason is capped so
        the tag stays within TAG_VALUE_MAX_CHARS, the full text is in the history)."""
        summary = self.model_dump(mode="json", exclude={"history"})
        summary["reason"] = summary["reason"][:REASON_MAX_CHARS]
        return summary


def _event_json(event: RolloutEvent) -> str:
    text = event.model_dump_json()
    if len(text) <= TAG_VALUE_MAX_CHARS:
        return text
    # Keep the decision and the pass/fail of each check; drop the bulky detail.
    slim = event.model_copy(
        update={
            "checks": {
                name: {k: v for k, v in check.items() if k in ("value", "threshold", "passed")}
                for name, check in event.checks.items()
            },
            "metrics": {},
            "reason": event.reason[:REASON_MAX_CHARS],
        }
    )
    return slim.model_dump_json()  # bounded: a dozen checks and 1,000 characters of reason


class RolloutStore:
    """Loads and saves the rollout state as tags on the registered model.

    Args:
        client: an `mlflow.MlflowClient` (its tracking URI names the registry).
        model_name: the registered model whose tags hold the state.
    """

    def __init__(self, client: Any, model_name: str = REGISTERED_MODEL) -> None:
        self.client = client
        self.model_name = model_name

    def _tags(self) -> dict[str, str] | None:
        from mlflow.exceptions import MlflowException

        try:
            model = self.client.get_registered_model(self.model_name)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise
        return dict(model.tags)

    def load(self, with_history: bool = True) -> RolloutState:
        """The current state (one registry call); `idle` when nothing was ever rolled out."""
        tags = self._tags()
        if not tags or STATE_TAG not in tags:
            return RolloutState()
        state = RolloutState.model_validate(json.loads(tags[STATE_TAG]))
        if with_history:
            state.history = [
                RolloutEvent.model_validate_json(tags[key])
                for key in sorted(k for k in tags if _HISTORY_KEY.match(k))
            ]
        return state

    def save(self, state: RolloutState) -> RolloutState:
        """Persist `state`: new history events first, then the state tag in one write.

        Readers that catch a save half-way see the previous state with one more event, never a
        torn state. History tags beyond `len(state.history)` (a previous rollout's) are deleted.
        Returns the state with `revision` and `updated_at` bumped.
        """
        tags = self._tags()
        if tags is None:
            raise LookupError(
                f"registered model {self.model_name!r} does not exist in the MLflow registry "
                "at this tracking URI: register a model version first (`make train`)"
            )
        previous = (
            RolloutState.model_validate(json.loads(tags[STATE_TAG])) if STATE_TAG in tags else None
        )
        same_rollout = previous is not None and previous.rollout_id == state.rollout_id
        stored = {int(m.group(1)): k for k in tags if (m := _HISTORY_KEY.match(k))}
        for index, event in enumerate(state.history):
            key = f"{HISTORY_TAG_PREFIX}{index:04d}"
            # Events are append-only within one rollout: rewrite only what is new.
            if same_rollout and index in stored:
                continue
            self.client.set_registered_model_tag(self.model_name, key, _event_json(event))
        for index, key in stored.items():
            if index >= len(state.history):
                self.client.delete_registered_model_tag(self.model_name, key)
        state.revision = (previous.revision if previous else 0) + 1
        state.updated_at = utc_now()
        self.client.set_registered_model_tag(
            self.model_name, STATE_TAG, json.dumps(state.summary(), separators=(",", ":"))
        )
        return state
