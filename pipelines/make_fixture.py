"""Cut the committed test fixture `tests/fixtures/corpus/` out of the full corpus (deterministic).

What it keeps, so the tests see every case the full corpus has:
- a uniform sample of every (group, period) cell: the `SAMPLE_SHARE` of its mails with the
  smallest message_id (an MD5, so effectively random), at least `MIN_PER_CELL`, mails over
  `MAX_SAMPLE_BYTES` skipped to keep the fixture small; spam shares per period stay realistic;
- every rejected mail, the first `EXAMPLES_PER_RULE` rows of each repair rule, and
  `DUPLICATE_PAIRS` duplicates with their originals;
- mails are copied as the package ships them: the `.json`, plus the raw `.txt` sibling when the
  JSON text is not byte-exact (non-UTF-8 mails), so the MD5 check behaves as on the full corpus.

Usage: `python -m pipelines.make_fixture [--source DIR] [--out tests/fixtures/corpus]`
(run `python -m pipelines.data` first: it reads the built parquet to choose the mails).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from modstack.corpus import load_corpus, load_rejected
from modstack.corpus.fetch import fetch_package
from modstack.settings import get_settings

SAMPLE_SHARE = 0.04
MIN_PER_CELL = 6
MAX_SAMPLE_BYTES = 12_000
EXAMPLES_PER_RULE = 3
DUPLICATE_PAIRS = 3
DEFAULT_OUT = Path("tests/fixtures/corpus")


def choose_mails(
    messages: pd.DataFrame, rejected: pd.DataFrame, sizes: dict[str, int]
) -> list[str]:
    """Source paths (`<group>/<file>.json`) of the fixture's mails, sorted."""
    chosen: set[str] = set(rejected["source_path"])
    ordered = messages.sort_values("message_id")
    cell_sizes = ordered.groupby(["group", "period"]).size()
    small = ordered[ordered["source_path"].map(sizes) <= MAX_SAMPLE_BYTES]
    for key, cell in small.groupby(["group", "period"]):
        take = max(MIN_PER_CELL, round(SAMPLE_SHARE * int(cell_sizes[key])))
        chosen.update(cell["source_path"].head(take))
    rules = sorted({r for value in messages["repaired"] if value for r in value.split(",")})
    for rule in rules:
        has_rule = ordered["repaired"].str.split(",").map(lambda rs, rule=rule: rule in rs)
        chosen.update(ordered.loc[has_rule, "source_path"].head(EXAMPLES_PER_RULE))
    duplicates = ordered[ordered["is_duplicate"]].head(DUPLICATE_PAIRS)
    originals = messages[
        messages["content_hash"].isin(duplicates["content_hash"]) & ~messages["is_duplicate"]
    ]
    chosen.update(duplicates["source_path"])
    chosen.update(originals["source_path"])
    return sorted(chosen)


def copy_mails(source_dir: Path, out_dir: Path, source_paths: list[str]) -> int:
    """Copy the chosen mails (and raw siblings where needed); returns the bytes written."""
    # Replace the group folders only: the README next to them documents the fixture.
    for stale in out_dir.glob("*/"):
        shutil.rmtree(stale)
    written = 0
    for relative in source_paths:
        src = source_dir / relative
        dst = out_dir / relative
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        written += dst.stat().st_size
        record = json.loads(src.read_text(encoding="utf-8"))
        exact = (
            hashlib.md5(record["text"].encode("utf-8")).hexdigest() == record["checksum"]["value"]
        )
        raw = src.with_suffix(".txt")
        if not exact and raw.exists():
            shutil.copyfile(raw, dst.with_suffix(".txt"))
            written += raw.stat().st_size
    return written


cli = typer.Typer(add_completion=False, help=__doc__.splitlines()[0])


@cli.command()
def main(
    source: Annotated[Path | None, typer.Option(help="package data folder")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="DATA_DIR with the parquet")] = None,
    out: Path = DEFAULT_OUT,
) -> None:
    """Cut the committed test corpus out of the full one (deterministic)."""
    data_dir = data_dir if data_dir is not None else get_settings().data_dir
    source_dir = source or fetch_package(data_dir)
    messages, rejected = load_corpus(data_dir), load_rejected(data_dir)
    sizes = {
        relative: (source_dir / relative).stat().st_size for relative in messages["source_path"]
    }
    chosen = choose_mails(messages, rejected, sizes)
    written = copy_mails(source_dir, out, chosen)
    print(f"{len(chosen)} mails, {written / 1e6:.2f} MB -> {out}")


if __name__ == "__main__":
    cli()
