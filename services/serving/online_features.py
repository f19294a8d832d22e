"""Online features for one request, through the model's own FeatureService.

The on-demand text features are computed by Feast from (subject, body) with the same code the
training set used; the sender features come from the online store. A feature the model needs but
the store does not have (new sender, expired TTL) is passed to the model as NaN and reported.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from modstack.names import FEAST_JOIN_KEY
from services.serving.deadline import DeadlineCaller
from services.serving.metrics import MISSING_FEATURES

log = logging.getLogger(__name__)

SERVICE_CACHE_S = 60.0


@dataclass(frozen=True)
class FeatureLookup:
    """The values a model saw, and which of its columns had no value."""

    values: dict[str, float | None]
    missing: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    error: str = ""  # set when the store could not be read at all


class OnlineFeatures:
    """Reads the FeatureService a model names from the Feast repo at `repo_path`.

    Calls Feast directly rather than `features.store.online_features` only to also read
    the per-field statuses: a value past its view's TTL comes back as null with status
    OUTSIDE_MAX_AGE, and serving reports it as stale rather than as never seen.

    Every read has a deadline (`timeout_s`, `DeadlineCaller`): a hung store (Redis stopped, a
    network partition) keeps its connection open and never answers, and a request must not
    wait for it. While a read that missed its deadline is still unanswered, the next lookups
    answer at once with the features missing; the first read after it finds the store again.
    """

    def __init__(self, repo_path: Any, timeout_s: float = 0.1) -> None:
        from feast.protos.feast.serving.ServingService_pb2 import FieldStatus

        from features.store import get_store

        self.store = get_store(repo_path)
        self._outside_max_age = FieldStatus.OUTSIDE_MAX_AGE
        self._services: dict[str, tuple[float, Any]] = {}
        self._deadline = DeadlineCaller(timeout_s, "online-features")
        self._warm: set[str] = set()  # services read once already in this process

    def _feature_service(self, name: str) -> Any:
        """The FeatureService object, kept for SERVICE_CACHE_S.

        Feast's registry cache holds protobufs and rebuilds the object on every
        `get_feature_service` call (typeguard-checked `Field.from_proto`): measured at ~70 % of
        an online read here. A model's FeatureService does not change under it; the short TTL
        only picks up a re-applied repo.
        """
        now = time.monotonic()
        cached = self._services.get(name)
        if cached is None or now - cached[0] > SERVICE_CACHE_S:
            cached = (now, self.store.get_feature_service(name, allow_cache=True))
            self._services[name] = cached
        return cached[1]

    def _read(
        self, feature_service: str, rows: list[tuple[str, str, str]]
    ) -> tuple[dict[str, list[Any]], list[set[str]]]:
        """One online read for many (sender, subject, body) rows: values by column, and per
        row the names whose value is past its TTL. The deadline covers the online store only:
        the FeatureService comes from the registry (cached) before it starts, and a service's
        first read in this process (Feast's on-demand code and the store's connection warm
        up: up to a second) is made without one."""
        service = self._feature_service(feature_service)
        if feature_service not in self._warm:
            found = self._read_service(service, rows)
            self._warm.add(feature_service)
            return found
        return self._deadline.call(self._read_service, service, rows)

    def _read_service(
        self, service: Any, rows: list[tuple[str, str, str]]
    ) -> tuple[dict[str, list[Any]], list[set[str]]]:
        response = self.store.get_online_features(
            features=service,
            entity_rows=[
                {FEAST_JOIN_KEY: sender, "subject": subject, "body": body}
                for sender, subject, body in rows
            ],
            full_feature_names=False,
        )
        values = response.to_dict()
        proto = response.proto
        stale: list[set[str]] = [set() for _ in rows]
        for name, result in zip(proto.metadata.feature_names.val, proto.results, strict=True):
            for i, status in enumerate(result.statuses):
                if status == self._outside_max_age:
                    stale[i].add(name)
        return values, stale

    def lookup(
        self,
        feature_service: str,
        columns: tuple[str, ...],
        sender_id: str,
        subject: str,
        body: str,
    ) -> FeatureLookup:
        """Feature values for one message; never raises for a store failure (all missing)."""
        return self.lookup_many(feature_service, columns, [(sender_id, subject, body)])[0]

    def lookup_many(
        self, feature_service: str, columns: tuple[str, ...], rows: list[tuple[str, str, str]]
    ) -> list[FeatureLookup]:
        """Feature values for a batch of (sender, subject, body) rows in one online read;
        never raises for a store failure (every row then has all features missing)."""
        try:
            values, stale = self._read(feature_service, rows)
        except Exception as exc:
            # The model still answers on text alone (NaN features take the learned missing
            # branch); the response and the prediction event say the features were missing.
            log.warning("online feature lookup failed for %s: %s", feature_service, exc)
            for name in columns:
                MISSING_FEATURES.labels(name).inc(len(rows))
            failed = FeatureLookup(dict.fromkeys(columns), list(columns), [], str(exc))
            return [failed] * len(rows)
        by_column = {name: values.get(name) or [None] * len(rows) for name in columns}
        lookups: list[FeatureLookup] = []
        missing_counts = dict.fromkeys(columns, 0)
        for i in range(len(rows)):
            picked = {name: _as_float(by_column[name][i]) for name in columns}
            missing = [name for name, value in picked.items() if value is None]
            for name in missing:
                missing_counts[name] += 1
            row_stale = stale[i]
            lookups.append(FeatureLookup(picked, missing, [n for n in columns if n in row_stale]))
        for name, count in missing_counts.items():
            if count:
                MISSING_FEATURES.labels(name).inc(count)
        return lookups

    def reachable(self, feature_service: str) -> tuple[bool, str]:
        """True when the store answers a lookup for the service (readiness)."""
        try:
            self._read(feature_service, [("readiness-probe@modstack.invalid", "", "")])
            return True, ""
        except Exception as exc:
            return False, f"{type(exc).__name__}: {exc}"


def _as_float(value: Any) -> float | None:
    return None if value is None else float(value)
