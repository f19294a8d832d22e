"""schemathesis hooks for the contract tests (SCHEMATHESIS_HOOKS names this module).

Event timestamps must lie between 1990 and the server's clock + 1 day (modstack.events). JSON
Schema has no bound for a `date-time` relative to the clock, so the schema says it in words and
this hook moves generated timestamps outside that range to 2002 (same month, day and time),
keeping the rest of the case as generated. The canary's rollout `steps` must increase, which
JSON Schema cannot say either (its description does): generated steps are put in order.
Every other field is fuzzed as the schema says.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import schemathesis

TIME_FIELDS = {"sent_at", "labeled_at"}
_YEAR = re.compile(r"^\d{4}")


def _in_range(value: str) -> bool:
    try:
        stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return True  # not a timestamp at all: leave it for the API to refuse
    stamp = stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
    return datetime(1990, 1, 2, tzinfo=UTC) <= stamp <= datetime.now(UTC)


def _increasing(value: Any) -> Any:
    numbers = isinstance(value, list) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
    )
    return sorted(value) if numbers else value


def _clamp(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: (
                _YEAR.sub("2002", value)
                if key in TIME_FIELDS and isinstance(value, str) and not _in_range(value)
                else _increasing(value)
                if key == "steps"
                else _clamp(value)
            )
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_clamp(item) for item in node]
    return node


@schemathesis.hook
def map_body(context: Any, body: Any) -> Any:
    """Timestamps into the range the API accepts, rollout steps in order (module docstring)."""
    return _clamp(body)
