"""Refreshing the docs' checked numbers (modstack.doc_values.refresh_values, run by
`make report`): a stale number is rewritten the way the doc writes it, an up-to-date doc is left
as it is, and what cannot be refreshed is reported rather than guessed at."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from modstack.doc_values import MINUS, check_span, parse_spans, refresh_values, write_like
from modstack.report import documents, main

MD = ".md"  # joined at run time, so the docs-links test reads no cited page here

ROOT = Path(__file__).resolve().parents[2]


def _results(folder: Path, **files: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, record in files.items():
        (folder / f"{name}.json").write_text(json.dumps(record))
    return folder


STALE = (
    "Throughput <!-- value: r.json a.rps -->11,111.1 req/s, "
    f"shift <!-- value: r.json a.shift -->{MINUS}1.00 points, "
    "gain <!-- value: r.json a.gain -->+1.0 %, "
    "pairs <!-- value: r.json a.pairs -->423, "
    "raw <!-- value: r.json a.raw -->1000 rows, "
    "range <!-- value: r.json a.low -->0\u2013<!-- value: r.json a.high -->2,000 messages."
)
RECORD = {
    "a": {
        "rps": 12345.678,
        "shift": -3.254,
        "gain": 2.5,
        "pairs": 1473,
        "raw": 2500,
        "low": 0,
        "high": 1999,
    }
}


def test_a_stale_number_is_rewritten_keeping_decimals_separators_and_signs(
    tmp_path: Path,
) -> None:
    results = _results(tmp_path / "results", r=RECORD)
    text, changed, left_alone = refresh_values(STALE, results, "docs/page")
    assert text == (
        "Throughput <!-- value: r.json a.rps -->12,345.7 req/s, "
        f"shift <!-- value: r.json a.shift -->{MINUS}3.25 points, "
        "gain <!-- value: r.json a.gain -->+2.5 %, "
        "pairs <!-- value: r.json a.pairs -->1,473, "
        "raw <!-- value: r.json a.raw -->2500 rows, "
        "range <!-- value: r.json a.low -->0\u2013<!-- value: r.json a.high -->1,999 messages."
    )
    assert changed == [
        "docs/page: r.json a.rps: 11,111.1 -> 12,345.7",
        f"docs/page: r.json a.shift: {MINUS}1.00 -> {MINUS}3.25",
        "docs/page: r.json a.gain: +1.0 -> +2.5",
        "docs/page: r.json a.pairs: 423 -> 1,473",
        "docs/page: r.json a.raw: 1000 -> 2500",
        "docs/page: r.json a.high: 2,000 -> 1,999",
    ]
    assert left_alone == []
    assert [check_span(s, results) for s in parse_spans(text, "docs/page")] == [None] * 7


@pytest.mark.parametrize(
    ("value", "old", "new"),
    [
        (-0.04, "0.0", "0.0"),  # no "-0.0"
        (-2.0, "+1.5", "-2.0"),  # a value turned negative loses its plus
        (-2.0, "1.5", "-2.0"),
        (0.5, "+0.25", "+0.50"),
        (1234567.0, "12", "1,234,567"),  # too short to show separators: the docs' style
        (1234567.0, "9999", "1234567"),  # written without them: kept without
    ],
)
def test_write_like(value: float, old: str, new: str) -> None:
    assert write_like(value, old) == new


def test_an_up_to_date_doc_is_unchanged(tmp_path: Path) -> None:
    results = _results(tmp_path / "results", r=RECORD)
    refreshed = refresh_values(STALE, results, "docs/page").text
    assert refresh_values(refreshed, results, "docs/page") == (refreshed, [], [])
    # numbers that round to the file's value stay as the doc rounded them
    rounded = "<!-- value: r.json a.rps -->12,346 and <!-- value: r.json a.shift -->-3.3"
    assert refresh_values(rounded, results) == (rounded, [], [])


def test_a_refresh_of_the_repository_docs_changes_nothing() -> None:
    """The docs agree with docs/results/ (tests/unit/test_docs_numbers.py): nothing to rewrite
    (a span test_docs_numbers fails for a missing file would be reported, not rewritten)."""
    for path in documents(ROOT / "docs"):
        text = path.read_text()
        refreshed, changed, _ = refresh_values(text, ROOT / "docs" / "results", path.name)
        assert (refreshed, changed) == (text, [])


def test_x100_scales_a_share_written_as_a_percentage(tmp_path: Path) -> None:
    results = _results(tmp_path / "results", r={"share": 0.0451})
    doc = "<!-- value: r.json share x100 -->3.9 % of decisions"
    text, changed, _ = refresh_values(doc, results, "README.md")
    assert text == "<!-- value: r.json share x100 -->4.5 % of decisions"
    assert changed == ["README.md: r.json share: 3.9 -> 4.5"]


def test_a_regex_group_is_refreshed_as_a_number(tmp_path: Path) -> None:
    results = _results(tmp_path / "results", r={"reason": "c=1473 of b=9"})
    doc = "<!-- value: r.json reason /c=(\\d+)/ -->423 labelled pairs"
    text, changed, _ = refresh_values(doc, results, "page")
    assert text == "<!-- value: r.json reason /c=(\\d+)/ -->1,473 labelled pairs"
    assert changed == ["page: r.json reason: 423 -> 1,473"]


def test_a_text_value_replaces_the_previous_value_and_only_that(tmp_path: Path) -> None:
    before = _results(tmp_path / "before", r={"status": "promoted"})
    after = _results(tmp_path / "after", r={"status": "rolled back"})
    doc = "The rollout was <!-- value: r.json status -->promoted; a model trained"
    text, changed, left_alone = refresh_values(doc, after, "page", previous=before)
    assert text == "The rollout was <!-- value: r.json status -->rolled back; a model trained"
    assert changed == ["page: r.json status: promoted -> rolled back"]
    assert left_alone == []
    assert refresh_values(text, after, "page", previous=before) == (text, [], [])


@pytest.mark.parametrize(
    ("doc", "previous"),
    [
        # the doc's text is not the previous value: which words to replace is a guess
        ("<!-- value: r.json status -->was promoted; a model", {"status": "promoted"}),
        # the previous value is not known
        ("<!-- value: r.json status -->promoted; a model", None),
        # the previous value was a number, the doc writes words
        ("<!-- value: r.json status -->promoted; a model", {"status": 3}),
    ],
)
def test_a_text_value_that_is_not_clearly_the_old_one_is_reported(
    tmp_path: Path, doc: str, previous: dict[str, Any] | None
) -> None:
    after = _results(tmp_path / "after", r={"status": "rolled back"})
    before = None if previous is None else _results(tmp_path / "before", r=previous)
    text, changed, left_alone = refresh_values(doc, after, "page", previous=before)
    assert (text, changed) == (doc, [])
    assert len(left_alone) == 1
    assert left_alone[0].startswith("page: r.json status: file says 'rolled back'")


def test_a_missing_results_file_or_path_leaves_the_span_alone_and_is_reported(
    tmp_path: Path,
) -> None:
    results = _results(tmp_path / "results", r={"a": 1.5})
    doc = (
        "<!-- value: gone.json a -->1.0 and <!-- value: r.json b -->2.0 "
        "and <!-- value: r.json a -->1.0 and <!-- value: r.json a -->no number"
    )
    text, changed, left_alone = refresh_values(doc, results, "page")
    assert text == doc.replace("r.json a -->1.0", "r.json a -->1.5")
    assert changed == ["page: r.json a: 1.0 -> 1.5"]
    assert left_alone == [
        "page: gone.json a: no results file gone.json: left alone",
        "page: r.json b: 'b' not found: left alone",
        "page: r.json a: no number after the span ('no number'): left alone",
    ]


def test_make_report_refreshes_readme_and_every_doc_under_docs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`make report` (report.main): copy the fresh results, render, refresh every document."""
    docs = tmp_path / "docs"
    _results(docs / "results", r={"ratio": 4.0, "status": "promoted"})
    fresh = _results(tmp_path / "var" / "results", r={"ratio": 3.6, "status": "rolled back"})
    (tmp_path / "README.md").write_text("<!-- value: r.json ratio -->4.0\u00d7 MLflow\n")
    (docs / "adr").mkdir()
    (docs / "adr" / f"0001{MD}").write_text("<!-- value: r.json status -->promoted, then\n")
    (docs / f"other{MD}").write_text("<!-- value: gone.json ratio -->4.0\u00d7\n")

    main(docs, source=fresh)

    assert (tmp_path / "README.md").read_text() == "<!-- value: r.json ratio -->3.6\u00d7 MLflow\n"
    adr = (docs / "adr" / f"0001{MD}").read_text()
    assert adr == "<!-- value: r.json status -->rolled back, then\n"
    assert (docs / f"other{MD}").read_text() == "<!-- value: gone.json ratio -->4.0\u00d7\n"
    out = capsys.readouterr().out
    assert "checked numbers: 2 changed" in out
    assert "README.md: r.json ratio: 4.0 -> 3.6" in out
    assert f"docs/adr/0001{MD}: r.json status: promoted -> rolled back" in out
    assert f"docs/other{MD}: gone.json ratio: no results file gone.json: left alone" in out
