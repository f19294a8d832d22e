"""freeze_long_lived takes what is alive out of the cyclic collector's scans, so a full
collection no longer walks a loaded model's objects (the pause behind serving's p99)."""

from __future__ import annotations

import gc
import time

from services.serving.deployment import freeze_long_lived


def test_a_full_collection_skips_what_was_alive_at_the_freeze() -> None:
    long_lived = [{"n-gram": i, "children": [i]} for i in range(200_000)]
    try:
        gc.collect()
        started = time.perf_counter()
        gc.collect()
        before = time.perf_counter() - started
        freeze_long_lived()
        assert gc.get_freeze_count() >= len(long_lived)
        started = time.perf_counter()
        gc.collect()
        after = time.perf_counter() - started
        assert after < before / 3
    finally:
        gc.unfreeze()
