"""Sticky canary assignment: which variant answers a sender, from a stable hash of its id.

Pure and framework-free. Every serving replica computes the same answer for the same sender,
salt and weight, so a sender sees one model across replicas and restarts; raising the weight
only moves senders from champion to challenger, never back (a sender's point on [0, 100) is
fixed for a given salt).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol

from modstack.events import Variant
from modstack.names import VARIANT_CHALLENGER, VARIANT_CHAMPION
from modstack.registry.rollout import ACTIVE_STATUSES

_SCALE = float(1 << 64)


def sender_point(sender_id: str, salt: str = "") -> float:
    """The sender's fixed position in [0, 100) for this salt.

    blake2b rather than Python's `hash()`: the built-in is salted per process
    (PYTHONHASHSEED), so two replicas would disagree about the same sender.
    """
    digest = hashlib.blake2b(f"{salt}\x00{sender_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE * 100.0


def assign_variant(sender_id: str, weight_percent: float, salt: str = "") -> Variant:
    """`challenger` for the share `weight_percent` (0..100, any resolution) of senders.

    Args:
        sender_id: the sticky key; one sender always lands on the same side for a salt.
        weight_percent: traffic share of the challenger, clamped to 0..100.
        salt: reshuffles who is in the canary population; serving uses the challenger's
            model version, so each rollout samples a fresh set of senders.
    """
    if weight_percent <= 0.0:
        return VARIANT_CHAMPION
    if weight_percent >= 100.0:
        return VARIANT_CHALLENGER
    in_canary = sender_point(sender_id, salt) < weight_percent
    return VARIANT_CHALLENGER if in_canary else VARIANT_CHAMPION


class RolloutLike(Protocol):
    """The fields of `modstack.registry.rollout.RolloutState` that routing reads."""

    @property
    def challenger_version(self) -> str | None: ...
    @property
    def weight_percent(self) -> float: ...
    @property
    def mode(self) -> str:  # "canary" | "shadow"
        ...
    @property
    def status(self) -> str:  # "idle" | "progressing" | "paused" | "promoted" | "rolled_back"
        ...


@dataclass(frozen=True)
class Route:
    """Who answers a request, and whether the other variant also scores it in the shadow."""

    answer: Variant
    shadow: bool = False  # score the variant that does not answer too (logged, not served)


FULL_WEIGHT = 100.0


class NoChallengerLoaded(LookupError):
    """A request forced the challenger but this replica has none loaded."""


def route_request(
    sender_id: str,
    rollout: RolloutLike | None,
    loaded_challenger: str | None,
    forced: Variant | None = None,
) -> Route:
    """Decide the variant for one request.

    The challenger takes traffic only while a rollout is active for exactly the version this
    replica has loaded (a replica that has not caught up with an alias move answers with the
    champion). In shadow mode the same sticky share is scored by the challenger too, but the
    champion always answers. At a canary weight of 100 % the champion scores every request in
    the shadow: the analysis of the last step then compares both models on the same
    messages, not the challenger's window with an older champion window (the traffic mix
    moves in between: the spam share of the future period swings from week to week).

    Raises:
        NoChallengerLoaded: `forced` is challenger and no challenger is loaded.
    """
    if forced == VARIANT_CHAMPION:
        return Route(VARIANT_CHAMPION)
    if forced == VARIANT_CHALLENGER:
        if loaded_challenger is None:
            raise NoChallengerLoaded("no challenger model is loaded on this replica")
        return Route(VARIANT_CHALLENGER)
    if (
        loaded_challenger is None
        or rollout is None
        or rollout.status not in ACTIVE_STATUSES
        or str(rollout.challenger_version) != str(loaded_challenger)
    ):
        return Route(VARIANT_CHAMPION)
    picked = assign_variant(sender_id, rollout.weight_percent, salt=str(loaded_challenger))
    if rollout.mode == "shadow":
        return Route(VARIANT_CHAMPION, shadow=picked == VARIANT_CHALLENGER)
    # Paired evidence: the rollout asks for this share of requests to be scored by both
    # variants (the canary compares the two models on the same messages).
    paired = getattr(rollout, "paired_percent", None) or 0.0
    in_pair = paired >= FULL_WEIGHT or sender_point(sender_id, f"{loaded_challenger}/pair") < paired
    return Route(picked, shadow=rollout.weight_percent >= FULL_WEIGHT or in_pair)
