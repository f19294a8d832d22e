"""Promote: `champion` -> the challenger's version (the outgoing champion is kept for rollback).

`python -m pipelines.promote [--reason TEXT]` promotes; `--rollback` moves `champion` back to
the previous champion. The canary controller does the same through `modstack.registry.aliases` once
rollout has proved the challenger on live traffic.
"""

from __future__ import annotations

from typing import Annotated

import typer

from modstack.names import ALIAS_CHALLENGER, ALIAS_CHAMPION, REGISTERED_MODEL, registered_model
from modstack.registry import aliases as registry


def promote(reason: str, model: str = REGISTERED_MODEL) -> str:
    """Promote the challenger of `model`; returns the new champion's version."""
    previous = registry.get_alias_version(ALIAS_CHAMPION, model=model)
    version = registry.promote_challenger(reason, model=model)
    print(f"champion: v{previous or '-'} -> v{version} ({reason})")
    return version


def rollback(reason: str, model: str = REGISTERED_MODEL) -> str:
    """Move `model`'s champion back to the previous one; returns the version now serving."""
    current = registry.get_alias_version(ALIAS_CHAMPION, model=model)
    version = registry.rollback_champion(reason, model=model)
    print(f"champion rolled back: v{current} -> v{version} ({reason})")
    return version


cli = typer.Typer(add_completion=False, help=__doc__.splitlines()[0])


@cli.command()
def main(
    reason: str = "manual promotion",
    rollback_: Annotated[
        bool, typer.Option("--rollback", help="champion back to the previous one")
    ] = False,
    policy: Annotated[str, typer.Option(help="whose model (a policy name)")] = "spam",
) -> str:
    """Promote the policy's challenger to champion (default) or roll its champion back."""
    model = registered_model(policy)
    try:
        if rollback_:
            return rollback(reason, model)
        return promote(reason, model)
    except registry.RegistryError as error:
        champion = registry.get_alias_version(ALIAS_CHAMPION, model=model)
        challenger = registry.get_alias_version(ALIAS_CHALLENGER, model=model)
        raise SystemExit(f"{error} (champion: {champion}, challenger: {challenger})") from error


if __name__ == "__main__":
    cli()
