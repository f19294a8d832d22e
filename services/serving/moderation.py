"""One request, every policy: which variant of each policy answers, the overall action, and
the events a decision produces (a prediction per policy; a review request for each policy
whose model was unsure).

Framework-free: the route (services/serving/routes.py) submits the items and awaits them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modstack.events import Action, PredictionEvent, ReviewRequest, Variant, utcnow
from modstack.names import ACTIONS, VARIANT_CHALLENGER, VARIANT_CHAMPION
from services.serving.deployment import Snapshot
from services.serving.routing import NoChallengerLoaded, Route, route_request
from services.serving.scoring import Decision, MessageLike, ScoreItem

_SEVERITY = {action: rank for rank, action in enumerate(ACTIONS)}  # allow < review < block


@dataclass(frozen=True)
class PolicyRoute:
    """Who answers for one policy, with the snapshot the decision was routed on."""

    policy: str
    route: Route
    snapshot: Snapshot

    def item(self, message: MessageLike, submitted: float) -> ScoreItem:
        """The item to score for this policy."""
        model = self.snapshot.model_for(self.route.answer)
        assert model is not None  # route_request only picks a loaded challenger
        return ScoreItem(message, model, self.route.answer, submitted, self.policy)


def route_policies(
    sender_id: str, served: Mapping[str, Snapshot], forced: Variant | None
) -> list[PolicyRoute]:
    """Each served policy's route for this sender. A forced challenger applies to every
    policy that has one loaded (the others answer with their champion).

    Raises:
        NoChallengerLoaded: the challenger is forced and no policy has one loaded.
    """
    routes: list[PolicyRoute] = []
    for policy, snapshot in served.items():
        challenger = snapshot.challenger.version if snapshot.challenger else None
        wanted = forced
        if forced == VARIANT_CHALLENGER and challenger is None:
            wanted = VARIANT_CHAMPION
        routes.append(
            PolicyRoute(
                policy, route_request(sender_id, snapshot.rollout, challenger, wanted), snapshot
            )
        )
    if forced == VARIANT_CHALLENGER and all(r.route.answer != forced for r in routes):
        raise NoChallengerLoaded("no policy has a challenger model loaded on this replica")
    return routes


def most_severe(actions: list[Action]) -> Action:
    """The overall action: block over review over allow."""
    return max(actions, key=_SEVERITY.__getitem__)


def policy_body(decision: Decision) -> dict[str, Any]:
    """One policy's part of the response (`schemas.PolicyDecision`)."""
    lookup = decision.lookup
    return {
        "score": decision.score,
        "action": decision.action,
        "model_version": decision.model.version,
        "variant": decision.variant,
        "features_used": list(decision.model.feature_columns),
        "features": lookup.values,
        "missing_features": lookup.missing,
        "stale_features": lookup.stale,
    }


def prediction_event(message: Any, decision: Decision, served: bool) -> PredictionEvent:
    """The `predictions.v1` event of one policy's decision."""
    return PredictionEvent(
        message_id=message.message_id,
        sender_id=message.sender_id,
        policy=decision.policy,
        sent_at=message.sent_at,
        scored_at=utcnow(),
        score=decision.score,
        action=decision.action,
        model_version=decision.model.version,
        variant=decision.variant,
        served=served,
        features=decision.lookup.values,
        missing_features=decision.lookup.missing,
        latency_ms=round(decision.seconds * 1000, 3),
    )


def review_request(message: Any, decision: Decision) -> ReviewRequest:
    """The `reviews.v1` request for a decision in the policy's review band."""
    return ReviewRequest(
        message_id=message.message_id,
        sender_id=message.sender_id,
        policy=decision.policy,
        subject=message.subject,
        body=message.body,
        sent_at=message.sent_at,
        score=decision.score,
        model_version=decision.model.version,
        variant=decision.variant,
        review_cutoff=decision.model.thresholds.review,
        block_cutoff=decision.model.thresholds.block,
        features=decision.lookup.values,
    )


def other_variant(variant: Variant) -> Variant:
    """The variant that did not answer."""
    return VARIANT_CHAMPION if variant == VARIANT_CHALLENGER else VARIANT_CHALLENGER
