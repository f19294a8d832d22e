"""Promote: `champion` -> the challenger's version (the outgoing champion is kept for rollback).

`python -m pipelines.promote [--reason TEXT]` promotes; `--rollback` moves `champion` back to
the previous champion. The canary controller does the same through `modstack.registry.aliases` once
rollout has proved the challenger on live traffic.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from modstack.names import ALIAS_CHALLENGER, ALIAS_CHAMPION
from modstack.registry import aliases as registry


def promote(reason: str) -> str:
    """Promote the challenger; returns the new champion's version."""
    previous = registry.get_alias_version(ALIAS_CHAMPION)
    version = registry.promote_challenger(reason)
    print(f"champion: v{previous or '-'} -> v{version} ({reason})")
    return version


def rollback(reason: str) -> str:
    """Move champion back to the previous champion; returns the version now serving."""
    current = registry.get_alias_version(ALIAS_CHAMPION)
    version = registry.rollback_champion(reason)
    print(f"champion rolled back: v{current} -> v{version} ({reason})")
    return version


def main(argv: Sequence[str] | None = None) -> str:
    """CLI: promote (default) or roll back."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reason", default="manual promotion")
    parser.add_argument("--rollback", action="store_true", help="champion back to the previous one")
    args = parser.parse_args(argv)
    try:
        if args.rollback:
            return rollback(args.reason)
        return promote(args.reason)
    except registry.RegistryError as error:
        champion = registry.get_alias_version(ALIAS_CHAMPION)
        challenger = registry.get_alias_version(ALIAS_CHALLENGER)
        raise SystemExit(f"{error} (champion: {champion}, challenger: {challenger})") from error


if __name__ == "__main__":
    main()
