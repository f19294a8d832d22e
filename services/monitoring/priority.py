"""Lowering the CPU priority of one background thread (not its process).

On Linux a nice value belongs to a thread: `setpriority(PRIO_PROCESS, <thread id>, n)` changes
only that thread (setpriority(2), "a thread's nice value"), so a service can run its batch work
(drift reports) behind the latency-critical processes of a shared machine while its consumer and
API threads keep their priority, and processes it starts from other threads are unaffected.
"""

from __future__ import annotations

import logging
import os
import sys
import threading

log = logging.getLogger(__name__)


def lower_this_thread(nice: int) -> None:
    """Raise the calling thread's nice value by `nice` (0: no change); Linux only, a no-op
    elsewhere (logged)."""
    if nice <= 0:
        return
    if not sys.platform.startswith("linux"):
        log.info("thread priority left unchanged: per-thread nice values are Linux-only")
        return
    tid = threading.get_native_id()
    current = os.getpriority(os.PRIO_PROCESS, tid)
    os.setpriority(os.PRIO_PROCESS, tid, min(19, current + nice))
