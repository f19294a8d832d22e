"""The corpus future period as the rollout demos replay it."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd

from modstack.corpus import load_corpus
from modstack.corpus.comments import from_sources
from pipelines.backfill import corpus_events
from pipelines.demo.replay import timeline


def demo_corpus() -> pd.DataFrame:
    """The corpus the demos replay: the e-mails. The comments join the traffic with the abuse
    policy's place in the demo; the spam model trains on e-mail (its policy's `sources`)."""
    corpus = load_corpus()
    return from_sources(corpus, ("email",))


def future_timeline(label_delay: timedelta) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(messages, labels, timeline) of the corpus future period, in event-time order."""
    messages, labels = corpus_events(demo_corpus(), "future", label_delay)
    messages = messages.sort_values("sent_at", kind="stable").reset_index(drop=True)
    return messages, labels, timeline(messages, labels)
