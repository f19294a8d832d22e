"""The development set used for model selection: well formed, and independent of the
behavioural suite (no message in both), which is the held-out test of the chosen design."""

from __future__ import annotations

from pipelines.behaviour import load_cases
from pipelines.devset import load_devset


def _normalised(text: str) -> str:
    return " ".join(text.lower().split())


def test_the_dev_set_holds_distinct_short_messages_of_both_classes() -> None:
    devset = load_devset()
    assert len(devset["ham"]) >= 200 and len(devset["spam"]) >= 50
    bodies = [_normalised(m["body"]) for kind in ("ham", "spam") for m in devset[kind]]
    assert len(set(bodies)) == len(bodies)
    assert all(0 < len(body.split()) <= 60 for body in bodies)


def test_no_dev_message_is_a_behaviour_case() -> None:
    suite_bodies = {_normalised(body) for body in load_cases().texts()}
    dev_bodies = {_normalised(m["body"]) for kind in ("ham", "spam") for m in load_devset()[kind]}
    assert not dev_bodies & suite_bodies, sorted(dev_bodies & suite_bodies)[:5]
