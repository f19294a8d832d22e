"""Serving's framework-free parts: routing a request, choosing the action, validating input,
the model contract check and the review queue."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from pydantic import ValidationError

from modstack.registry.contract import TEXT_COLUMNS, Thresholds
from modstack.registry.rollout import RolloutState
from services.serving.app import ModerateRequest
from services.serving.hot_path import model_frame
from services.serving.model_store import LoadedModel, ModelContractError, contract_from_metadata
from services.serving.routing import NoChallengerLoaded, route_request

SENDERS = [f"sender{i}@example.com" for i in range(5_000)]


def _rollout(**overrides: object) -> RolloutState:
    base: dict[str, object] = {
        "challenger_version": "7",
        "weight_percent": 20.0,
        "mode": "canary",
        "status": "progressing",
    }
    base.update(overrides)
    return RolloutState.model_validate(base)


# -- routing a request -------------------------------------------------------------------------


def test_without_a_rollout_the_champion_answers_everyone() -> None:
    assert {route_request(s, None, "7").answer for s in SENDERS[:500]} == {"champion"}


def test_active_canary_sends_about_the_weight_to_the_challenger() -> None:
    answers = [route_request(s, _rollout(), "7").answer for s in SENDERS]
    share = answers.count("challenger") / len(answers)
    assert abs(share - 0.20) < 5 * (0.2 * 0.8 / len(SENDERS)) ** 0.5


@pytest.mark.parametrize("status", ["idle", "promoted", "rolled_back"])
def test_inactive_rollout_statuses_route_nobody_to_the_challenger(status: str) -> None:
    rollout = _rollout(status=status, weight_percent=100.0)
    assert {route_request(s, rollout, "7").answer for s in SENDERS[:500]} == {"champion"}


def test_paused_rollout_keeps_its_weight() -> None:
    rollout = _rollout(status="paused", weight_percent=100.0)
    assert {route_request(s, rollout, "7").answer for s in SENDERS[:200]} == {"challenger"}


def test_replica_with_another_challenger_version_loaded_routes_to_champion() -> None:
    rollout = _rollout(weight_percent=100.0)
    assert {route_request(s, rollout, "6").answer for s in SENDERS[:200]} == {"champion"}


def test_shadow_mode_always_answers_with_champion_and_shadows_the_weighted_share() -> None:
    routes = [route_request(s, _rollout(mode="shadow", weight_percent=50.0), "7") for s in SENDERS]
    assert {r.answer for r in routes} == {"champion"}
    shadowed = sum(r.shadow for r in routes) / len(routes)
    assert 0.45 < shadowed < 0.55


def test_at_full_weight_the_challenger_answers_and_the_champion_scores_in_the_shadow() -> None:
    routes = [route_request(s, _rollout(weight_percent=100.0), "7") for s in SENDERS[:500]]
    assert {(r.answer, r.shadow) for r in routes} == {("challenger", True)}


def test_below_full_weight_a_canary_shadows_nothing() -> None:
    routes = [route_request(s, _rollout(weight_percent=99.0), "7") for s in SENDERS[:500]]
    assert not any(r.shadow for r in routes)


def test_shadow_share_is_the_same_senders_the_canary_would_pick() -> None:
    canary = [route_request(s, _rollout(), "7").answer == "challenger" for s in SENDERS]
    shadow = [route_request(s, _rollout(mode="shadow"), "7").shadow for s in SENDERS]
    assert canary == shadow


def test_forced_variant_overrides_the_weight() -> None:
    rollout = _rollout(weight_percent=0.0)
    assert route_request("a@b.c", rollout, "7", forced="challenger").answer == "challenger"
    assert route_request("a@b.c", _rollout(weight_percent=100.0), "7", "champion").answer == (
        "champion"
    )


def test_forcing_the_challenger_without_one_loaded_is_refused() -> None:
    with pytest.raises(NoChallengerLoaded):
        route_request("a@b.c", None, None, forced="challenger")


# -- choosing the action -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("score", "action"),
    [(0.0, "allow"), (0.299, "allow"), (0.3, "review"), (0.899, "review"), (0.9, "block")],
)
def test_action_follows_the_model_thresholds_at_their_boundaries(score: float, action: str) -> None:
    assert Thresholds(block=0.9, review=0.3).action_for(score) == action


def test_thresholds_out_of_order_are_refused() -> None:
    with pytest.raises(ValueError, match="review <= block"):
        Thresholds(block=0.2, review=0.5)


def test_model_metadata_without_the_contract_keys_is_refused_with_the_missing_keys() -> None:
    partial = {"thresholds": {"block": 0.9, "review": 0.5}, "feature_service": "f"}
    with pytest.raises(ModelContractError, match="feature_columns"):
        contract_from_metadata(partial)
    with pytest.raises(ModelContractError, match="no metadata"):
        contract_from_metadata(None)


def test_model_input_has_text_then_feature_columns_with_nan_for_missing() -> None:
    thresholds, service, columns = contract_from_metadata(
        {
            "thresholds": {"block": 0.9, "review": 0.5},
            "feature_service": "spam_model_v1",
            "feature_columns": ["sender_messages_7d", "body_chars"],
        }
    )
    model = LoadedModel("3", object(), thresholds, service, columns, "cache")
    frame = model_frame(
        ["hi"], ["there"], [{"body_chars": 5, "unused": 1.0}], TEXT_COLUMNS, model.feature_columns
    )
    assert list(frame.columns) == ["subject", "body", "sender_messages_7d", "body_chars"]
    assert np.isnan(frame.loc[0, "sender_messages_7d"])
    assert frame.loc[0, "body_chars"] == 5.0


# -- request validation ------------------------------------------------------------------------


def _request(**overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "message_id": "m-1",
        "sender_id": "a@b.c",
        "subject": "hello",
        "body": "text",
        "sent_at": "2002-09-01T10:00:00Z",
    }
    body.update(overrides)
    return body


def test_valid_request_is_accepted_and_time_is_utc() -> None:
    message = ModerateRequest.model_validate(_request(sent_at="2002-09-01T12:00:00+02:00"))
    assert message.sent_at == datetime(2002, 9, 1, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"message_id": ""}, "message_id"),
        ({"sender_id": "   "}, "sender_id"),
        ({"sent_at": "not a time"}, "sent_at"),
        ({"sent_at": (datetime.now(UTC) + timedelta(days=3)).isoformat()}, "sent_at"),
        ({"body": "x" * 200_001}, "body"),
        ({"unexpected": 1}, "unexpected"),
    ],
)
def test_invalid_requests_are_refused_naming_the_field(overrides: dict, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        ModerateRequest.model_validate(_request(**overrides))
    assert field in str(info.value)


def test_missing_sent_at_is_refused() -> None:
    body = _request()
    del body["sent_at"]
    with pytest.raises(ValidationError, match="sent_at"):
        ModerateRequest.model_validate(body)
