"""The one-command typer app every demo module builds its CLI on."""

from __future__ import annotations

import typer


def demo_cli(doc: str) -> typer.Typer:
    """The one-command typer app of a demo module: `doc` (its module docstring) is the help,
    and `-h` works as well as `--help`."""
    return typer.Typer(
        add_completion=False,
        help=doc.splitlines()[0],
        context_settings={"help_option_names": ["-h", "--help"]},
    )
