"""Scoring a micro-batch: one Feast online read per feature service for all the batch's
messages, one model call per model version, one Decision (or error) per item.

Framework-free: the batcher (services/serving/batcher.py) calls `BatchScorer.__call__` on its
scoring thread; the routes only submit items and await their Decision.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from modstack.events import Action, Variant
from modstack.names import VARIANT_CHALLENGER
from modstack.policy import DEFAULT_POLICY
from services.serving.model_store import LoadedModel
from services.serving.online_features import FeatureLookup


class MessageLike(Protocol):
    """The request fields scoring reads (ModerateRequest has them)."""

    @property
    def sender_id(self) -> str: ...
    @property
    def subject(self) -> str: ...
    @property
    def body(self) -> str: ...


class FeatureSource(Protocol):
    """`OnlineFeatures.lookup_many`."""

    def lookup_many(
        self, feature_service: str, columns: tuple[str, ...], rows: list[tuple[str, str, str]]
    ) -> list[FeatureLookup]: ...


class InjectedFault(RuntimeError):
    """An error injected into the challenger's path on purpose."""


@dataclass(frozen=True)
class ScoreItem:
    """One message to score with one policy's model version."""

    message: MessageLike
    model: LoadedModel
    variant: Variant
    submitted: float  # time.perf_counter() when the request was routed
    policy: str = DEFAULT_POLICY


@dataclass(frozen=True)
class Decision:
    """One policy's decision on one message, and what it took."""

    model: LoadedModel
    variant: Variant
    lookup: FeatureLookup
    score: float
    action: Action
    seconds: float  # from routing to the decision: queueing + features + model
    policy: str = DEFAULT_POLICY


class BatchScorer:
    """The batch handler: features per feature service, then the model per version.

    Args:
        features: the online store reader.
        challenger_error_rate: share of challenger items failed on purpose (rollback demo);
            read on every batch, so the admin endpoint can change it at runtime.
    """

    def __init__(self, features: FeatureSource, challenger_error_rate: Callable[[], float]):
        self.features = features
        self.challenger_error_rate = challenger_error_rate

    def __call__(self, items: list[ScoreItem]) -> list[Decision | BaseException]:
        results: list[Decision | BaseException | None] = [None] * len(items)
        error_rate = self.challenger_error_rate()
        live: list[int] = []
        for i, item in enumerate(items):
            if (
                item.variant == VARIANT_CHALLENGER
                and error_rate > 0
                and random.random() < error_rate
            ):
                results[i] = InjectedFault(
                    "injected challenger error (SERVING_CHALLENGER_ERROR_RATE)"
                )
                continue
            live.append(i)

        lookups: dict[int, FeatureLookup] = {}
        by_service: dict[tuple[str, tuple[str, ...]], list[int]] = defaultdict(list)
        for i in live:
            model = items[i].model
            by_service[(model.feature_service, model.feature_columns)].append(i)
        for (service, columns), indices in by_service.items():
            if not columns:  # a text-only model (e.g. abuse): nothing to read from the store
                lookups.update((i, FeatureLookup({})) for i in indices)
                continue
            rows = [
                (items[i].message.sender_id, items[i].message.subject, items[i].message.body)
                for i in indices
            ]
            found = self.features.lookup_many(service, columns, rows)
            lookups.update(zip(indices, found, strict=True))

        by_model: dict[int, list[int]] = defaultdict(list)
        for i in live:
            by_model[id(items[i].model)].append(i)
        for indices in by_model.values():
            model = items[indices[0]].model
            scores = model.score_batch(
                [items[i].message.subject for i in indices],
                [items[i].message.body for i in indices],
                [lookups[i].values for i in indices],
            )
            now = time.perf_counter()
            for i, score in zip(indices, scores, strict=True):
                item = items[i]
                action = model.thresholds.action_for(score)
                results[i] = Decision(
                    model,
                    item.variant,
                    lookups[i],
                    score,
                    action,
                    now - item.submitted,
                    item.policy,
                )
        return [r if r is not None else RuntimeError("item not scored") for r in results]
