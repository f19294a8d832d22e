"""lower_this_thread changes the calling thread's nice value only: the main thread keeps its
priority, and a thread started by the main thread afterwards does too."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from services.monitoring.priority import lower_this_thread

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux thread nice")


def _nice_of_thread(action: object = None) -> int:
    seen: list[int] = []

    def run() -> None:
        if callable(action):
            action()
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=10)
    return seen[0]


def test_only_the_calling_thread_is_lowered() -> None:
    main_before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    lowered = _nice_of_thread(lambda: lower_this_thread(5))
    assert lowered == min(19, main_before + 5)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == main_before
    assert _nice_of_thread() == main_before


def test_zero_changes_nothing() -> None:
    main_before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert _nice_of_thread(lambda: lower_this_thread(0)) == main_before
