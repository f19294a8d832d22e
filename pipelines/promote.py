"""Promote: `champion` -> the challenger's version (the outgoing champion is kept for rollback).

`python -m pipelines.promote [--reason TEXT]` promotes; `--rollback` moves `champion` back to
the previous champion. The canary controller does the same through `modstack.registry.aliases` once
rollout has proved the challenger on live traffic.
"""

from __future__ import annotations

from typing import Annotated

import typer

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


cli = typer.Typer(add_completion=False, help=__doc__.splitlines()[0])


@cli.command()
def main(
    reason: str = "manual promotion",
    rollback_: Annotated[
        bool, typer.Option("--rollback", help="champion back to the previous one")
    ] = False,
) -> str:
    """Promote the challenger to champion (default) or roll the champion back."""
    try:
        if rollback_:
            return rollback(reason)
        return promote(reason)
    except registry.RegistryError as error:
        champion = registry.get_alias_version(ALIAS_CHAMPION)
        challenger = registry.get_alias_version(ALIAS_CHALLENGER)
        raise SystemExit(f"{error} (champion: {champion}, challenger: {challenger})") from error


if __name__ == "__main__":
    cli()
