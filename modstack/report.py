"""`modstack report`: render the results files into docs/benchmarks.md.

Each results file (var/run/results/<name>.json, written by a benchmark or a demo) is copied to
docs/results/<name>.json, so the docs cite files the repository holds, and its tables are
rendered between the markers `<!-- result:<name> -->` and `<!-- /result:<name> -->` of
docs/benchmarks.md. The prose around the markers is kept; a result with no marker yet is added
at the end, under "More results".

Then every checked number of the docs (README.md and docs/**/*.md, the `<!-- value: FILE PATH -->`
spans of modstack.doc_values) that disagrees with the fresh copies is rewritten the way the doc
writes it, and the changes are printed; a span that cannot be refreshed is printed, not guessed.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modstack.doc_values import refresh_values
from modstack.results import Result, ResultTable, read_result, results_dir

MORE_RESULTS = "## More results"


@dataclass(frozen=True)
class ReportOutcome:
    """What a report run did."""

    rendered: list[str]
    appended: list[str]
    document: Path


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if value != 0 and abs(value) < 0.01:
            return f"{value:.2g}"
        return f"{value:,.3f}".rstrip("0").rstrip(".") if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value).replace("|", "\\|")


def render_table(table: ResultTable) -> str:
    """A Markdown table with its caption above it."""
    lines = [f"*{table.caption}*", ""] if table.caption else []
    lines.append("| " + " | ".join(table.columns) + " |")
    lines.append("| " + " | ".join("---" for _ in table.columns) + " |")
    lines.extend("| " + " | ".join(_cell(c) for c in row) + " |" for row in table.rows)
    return "\n".join(lines)


def _scalar_rows(prefix: str, value: Any) -> list[list[Any]]:
    """(dotted path, value) of every number and word under `value`, however deep."""
    if isinstance(value, dict):
        return [
            row
            for key, item in value.items()
            for row in _scalar_rows(f"{prefix}.{key}" if prefix else str(key), item)
        ]
    if isinstance(value, (int, float, str)):
        return [[prefix, value]]
    return []


# bookkeeping a reader of the rendered table does not need (the file keeps it)
_BOOKKEEPING = {"rollout_id", "revision", "controller_error", "routed_weight_percent"}


def _kept(path: str, top_level: set[str]) -> bool:
    """A nested field repeating a top-level one (a rollout's own status and reason), a
    timestamp or a bookkeeping id is left out of the rendered table, and of a check only its
    verdict and detail are kept (the file keeps every field)."""
    if "." not in path:
        return True
    last = path.rsplit(".", 1)[1]
    if ".checks." in path:  # a judged window's check: its verdict and the sentence saying why
        return last in ("verdict", "detail")
    return last not in top_level and not last.endswith("_at") and last not in _BOOKKEEPING


def _scalar_table(data: dict[str, Any]) -> ResultTable:
    """A file without tables (a demo's rollout record, the fault tests' costs): its numbers
    and words at any depth, one row each under its dotted path."""
    rows = [row for key, value in data.items() if key != "date" for row in _scalar_rows(key, value)]
    rows = [row for row in rows if _kept(row[0], set(data))]
    return ResultTable(caption="", columns=["field", "value"], rows=rows)


def render_result(result: Result, link: str) -> str:
    """The tables of one result, then where they came from."""
    tables = result.tables or [_scalar_table(result.data)]
    parts = [render_table(table) for table in tables if table.rows]
    parts.extend(f"- {note}" for note in result.notes)
    parts.append(f"<sub>Source: [{Path(link).name}]({link}), {_provenance(result)}.</sub>")
    return "\n\n".join(parts)


def _provenance(result: Result) -> str:
    """Who wrote the file, when and where, saying plainly what its writer did not record
    (older demo and fault records carry no machine, some no command)."""
    origin = result.provenance
    known = result.command not in ("", "?")
    said = [f"written by `{result.command}`" if known else "its writer recorded no command"]
    if origin.get("date", "?") != "?":
        said.append(f"on {origin['date']}")
    machine = origin.get("machine")
    if not machine:
        return " ".join(said) + "; no machine recorded"
    versions = ", ".join(f"{k} {v}" for k, v in origin.get("versions", {}).items())
    return (
        " ".join(said) + f"; {machine.get('cores', '?')} cores, "
        f"{machine.get('memory_gib', '?')} GiB, load {machine.get('load_average_1m', '?')}, "
        f"Python {machine.get('python', '?')}; {versions}"
    )


def render(document: Path, results: dict[str, Result], link_prefix: str) -> ReportOutcome:
    """Replace each result's marked block in `document` (append the unmarked ones)."""
    text = document.read_text() if document.exists() else "# Benchmarks\n"
    rendered, appended = [], []
    for name, result in sorted(results.items()):
        block = render_result(result, f"{link_prefix}{name}.json")
        pattern = re.compile(
            rf"(<!-- result:{re.escape(name)} -->\n).*?(\n<!-- /result:{re.escape(name)} -->)",
            re.S,
        )
        match = pattern.search(text)
        if match is not None:
            text = (
                text[: match.start()]
                + match.group(1)
                + block
                + match.group(2)
                + text[match.end() :]
            )
            rendered.append(name)
            continue
        if MORE_RESULTS not in text:
            text = text.rstrip() + f"\n\n{MORE_RESULTS}\n"
        marked = f"<!-- result:{name} -->\n{block}\n<!-- /result:{name} -->"
        text = text.rstrip() + f"\n\n### {result.title}\n\n{marked}\n"
        appended.append(name)
    document.write_text(text)
    return ReportOutcome(rendered=rendered, appended=appended, document=document)


def build_report(
    docs_dir: Path = Path("docs"), source: Path | None = None, document: str = "benchmarks.md"
) -> ReportOutcome:
    """Copy the results files into docs/results/ and render them into docs/benchmarks.md."""
    source = source or results_dir()
    copies = docs_dir / "results"
    copies.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.glob("*.json")) if source.exists() else []:
        shutil.copy2(path, copies / path.name)
    results = {path.stem: read_result(path) for path in sorted(copies.glob("*.json"))}
    return render(docs_dir / document, results, link_prefix="results/")


def documents(docs_dir: Path) -> list[Path]:
    """The documents whose checked numbers are refreshed: README.md beside `docs_dir`, then
    every .md under it (ADRs included), the set tests/unit/test_docs_numbers.py reads."""
    readme = docs_dir.parent / "README.md"
    return [*([readme] if readme.exists() else []), *sorted(docs_dir.rglob("*.md"))]


def refresh_docs(docs_dir: Path, previous: Path | None = None) -> tuple[list[str], list[str]]:
    """Rewrite the stale checked numbers of every document to docs_dir/results/ (`previous`:
    the results as they were before, which tells a text value's old words). Returns what
    changed and what was left alone."""
    changed: list[str] = []
    left_alone: list[str] = []
    for path in documents(docs_dir):
        text = path.read_text()
        name = str(path.relative_to(docs_dir.parent))
        refreshed = refresh_values(text, docs_dir / "results", name, previous)
        if refreshed.text != text:
            path.write_text(refreshed.text)
        changed.extend(refreshed.changed)
        left_alone.extend(refreshed.left_alone)
    return changed, left_alone


def main(
    docs_dir: Path = Path("docs"),
    source: Path | None = None,
) -> None:
    """Render var/run/results/*.json into docs/benchmarks.md (copies kept in docs/results/),
    then refresh the checked numbers of README.md and docs/**/*.md."""
    with tempfile.TemporaryDirectory() as before:
        previous = Path(before) / "results"
        if (docs_dir / "results").exists():
            shutil.copytree(docs_dir / "results", previous)
        outcome = build_report(docs_dir, source)
        changed, left_alone = refresh_docs(docs_dir, previous)
    print(
        f"{outcome.document}: {len(outcome.rendered)} results re-rendered"
        + (
            f", {len(outcome.appended)} added ({', '.join(outcome.appended)})"
            if outcome.appended
            else ""
        )
    )
    print(f"checked numbers: {len(changed)} changed")
    for line in changed:
        print(f"  {line}")
    if left_alone:
        print(f"checked numbers left alone ({len(left_alone)}), fix them by hand:")
        for line in left_alone:
            print(f"  {line}")


if __name__ == "__main__":
    import typer

    typer.run(main)
