"""The docs' numbers, commands and cited files are the repository's: every number written in a
checked span agrees with the results file it names, every rendered results block is what
`make report` renders from docs/results/ now, every `make <target>` exists and every cited
source path exists.

A checked span is an HTML comment right before the number it checks:

    <!-- value: bench-serving.json data.summary.ratio_closed_loop -->4.0x

`FILE` is a file in docs/results/; `PATH` walks it by dotted keys (list items by index; in a
table `{caption, columns, rows}`, the next key picks the row whose first cell reads so and the
one after it the column; a row number where first cells repeat). Options after the path:
`/regex/` takes group 1 of a text value,
`x100` checks a share written as a percentage. Rounding rule: the doc may round the file's
value to the decimals it writes (half a unit of the last written digit); thousands separators,
a leading `+` and a minus sign are read as numbers. A text value must be the text that follows.

The spans are parsed and checked by modstack/doc_values.py, the same code with which
`make report` rewrites the stale numbers after copying fresh results files; this test then says
whether what it left (and what was edited by hand) agrees.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from modstack.doc_values import Span, check_span, parse_spans
from modstack.report import documents, render_result
from modstack.results import read_result

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "docs" / "results"
DOCS = documents(ROOT / "docs")  # the set `make report` refreshes

BLOCK = re.compile(
    r"<!-- result:(?P<name>[\w-]+) -->\n(?P<body>.*?)\n<!-- /result:(?P=name) -->", re.S
)
MAKE = re.compile(r"`make ([a-z][\w-]*)")
# a path into the repository's source, written in backticks
SOURCE = re.compile(
    r"`((?:modstack|features|services|pipelines|loadtests|stack|tests|deploy|\.github)/[\w./-]*)`"
)


def _spans() -> list[Span]:
    return [
        span for doc in DOCS for span in parse_spans(doc.read_text(), str(doc.relative_to(ROOT)))
    ]


def test_the_main_pages_carry_checked_numbers() -> None:
    counted = {s.doc for s in _spans()}
    assert {"README.md", "docs/design.md", "docs/training.md", "docs/benchmarks.md"} <= counted


@pytest.mark.parametrize("span", _spans(), ids=lambda s: f"{s.doc}:{s.file}:{s.path}")
def test_each_checked_number_agrees_with_its_results_file(span: Span) -> None:
    assert check_span(span, RESULTS) is None, check_span(span, RESULTS)


def stale_blocks(text: str, link_dir: str, results: Path = RESULTS) -> list[str]:
    """Names of the `<!-- result:NAME -->` blocks that differ from what the report renders."""
    stale = []
    for match in BLOCK.finditer(text):
        name = match.group("name")
        source = results / f"{name}.json"
        link = f"{link_dir}/{name}.json"
        if not source.exists() or render_result(read_result(source), link) != match.group("body"):
            stale.append(name)
    return stale


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_rendered_results_blocks_are_current(doc: Path) -> None:
    """A rendered block is exactly what `make report` renders from docs/results/ now."""
    link_dir = "results" if doc.parent.name == "docs" else "docs/results"
    stale = stale_blocks(doc.read_text(), link_dir)
    assert stale == [], f"re-render these blocks from docs/results/: {stale}"


def _make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([a-z][\w-]*):", text, re.M))


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_make_target_named_exists(doc: Path) -> None:
    missing = sorted(set(MAKE.findall(doc.read_text())) - _make_targets())
    assert missing == [], f"{doc.relative_to(ROOT)} names make targets the Makefile lacks"


@pytest.mark.parametrize(
    "doc", [d for d in DOCS if "adr" not in d.parts], ids=lambda p: str(p.relative_to(ROOT))
)
def test_every_cited_source_path_exists(doc: Path) -> None:
    """ADRs are records of their time and keep the paths they were written against."""
    missing = [
        path
        for path in SOURCE.findall(doc.read_text())
        if not (ROOT / path.rstrip("/")).exists() and not any(c in path for c in "*{<")
    ]
    assert missing == [], f"{doc.relative_to(ROOT)} cites paths the repository lacks: {missing}"


# ---- the checks themselves catch what they are for -------------------------------------------


def test_a_planted_mismatch_fails(tmp_path: Path) -> None:
    """Copy the results files, change one number the design doc cites: the span now fails."""
    copies = tmp_path / "results"
    shutil.copytree(RESULTS, copies)
    serving = copies / "bench-serving.json"
    record = json.loads(serving.read_text())
    record["data"]["summary"]["ratio_closed_loop"] = 5.9
    serving.write_text(json.dumps(record))
    design = (ROOT / "docs" / "design.md").read_text()
    spans = [
        s
        for s in parse_spans(design, "docs/design.md")
        if s.path == "data.summary.ratio_closed_loop"
    ]
    assert spans, "design.md cites the closed-loop ratio in a checked span"
    assert all(check_span(s, RESULTS) is None for s in spans)
    assert all("file says 5.9" in (check_span(s, copies) or "") for s in spans)


def test_a_planted_wrong_number_in_a_doc_fails() -> None:
    text = "<!-- value: faults.json processor_sigkill.accepted_messages -->2,001 messages"
    (span,) = parse_spans(text, "planted-doc")
    assert check_span(span, RESULTS) == (
        "planted-doc: faults.json processor_sigkill.accepted_messages: "
        "file says 2000, doc says 2,001"
    )


def test_a_span_right_behind_another_is_checked_too() -> None:
    # a range "a-b" with a span on each end: the second span used to be swallowed by the
    # first one's text and never checked
    good = (
        "<!-- value: faults.json processor_sigkill.lost -->0\u2013"
        "<!-- value: faults.json processor_sigkill.accepted_messages -->2,000"
    )
    bad = good.replace("-->2,000", "-->2,001")
    assert [check_span(s, RESULTS) for s in parse_spans(good, "doc")] == [None, None]
    assert [check_span(s, RESULTS) is None for s in parse_spans(bad, "doc")] == [True, False]


@pytest.mark.parametrize(
    ("text", "agrees"),
    [
        ("<!-- value: train-history.json tables.0.pr_auc.candidate -->0.995", True),
        ("<!-- value: train-history.json tables.0.pr_auc.candidate -->0.9946", True),
        ("<!-- value: train-history.json tables.0.pr_auc.candidate -->0.99", True),
        ("<!-- value: train-history.json tables.0.pr_auc.candidate -->0.996", False),
        ("<!-- value: train-history.json tables.0.pr_auc.candidate -->0.98", False),
        ("<!-- value: train-history.json tables.0.pr_auc.candidate x100 -->99.5 %", True),
        ("<!-- value: demo-rollback-shuffled.json reason /c=(\\d+)/ -->423", True),
        ("<!-- value: demo-rollback-shuffled.json reason /c=(\\d+)/ -->1,473", False),
        ("<!-- value: demo-rollout.json status -->promoted", True),
        ("<!-- value: demo-rollout.json status -->rolled back", False),
        # a key holding spaces; a count the fault must keep at 0, so a re-run does not move it
        ("<!-- value: faults-serving.json data.MLflow SIGKILLed.non_200_answers -->0", True),
        ("<!-- value: faults-serving.json data.MLflow SIGKILLed.non_200_answers -->1", False),
    ],
)
def test_rounding_and_selection_rules(text: str, agrees: bool) -> None:
    (span,) = parse_spans(text, "rules-doc")
    assert (check_span(span, RESULTS) is None) is agrees


def test_a_stale_rendered_block_is_caught(tmp_path: Path) -> None:
    """Change one number of a results file the benchmarks page renders: its block is stale."""
    copies = tmp_path / "results"
    shutil.copytree(RESULTS, copies)
    loadtest = copies / "loadtest.json"
    record = json.loads(loadtest.read_text())
    record["tables"][0]["rows"][2][6] = 90.0  # moderate p99 ms
    loadtest.write_text(json.dumps(record))
    text = (ROOT / "docs" / "benchmarks.md").read_text()
    assert "loadtest" not in stale_blocks(text, "results")
    assert stale_blocks(text, "results", copies) == ["loadtest"]


def test_unknown_make_targets_and_paths_are_caught() -> None:
    assert "demo-everything" not in _make_targets()
    assert "train" in _make_targets()
    assert SOURCE.findall("see `pipelines/no_such_step.py`") == ["pipelines/no_such_step.py"]
    assert not (ROOT / "pipelines/no_such_step.py").exists()


def quoted_fragments(excerpt: str) -> list[str]:
    """The pieces of every string value in a JSON excerpt that elides with "…"."""
    fragments = []
    for value in re.findall(r'":\s*"((?:[^"\\]|\\.)*)"', excerpt):
        fragments += [piece.strip(" ,;:(") for piece in value.split("…")]
    return [piece for piece in fragments if len(piece) >= 3]


def test_the_readme_demo_excerpt_quotes_the_committed_demo_record() -> None:
    """The README's JSON excerpt of `make demo`'s output is the committed results file's text
    (elided with "…"), not a hand-written lookalike."""
    readme = (ROOT / "README.md").read_text()
    excerpt = re.search(r"```json\n(.*?)\n```", readme, re.S)
    assert excerpt is not None, "README.md has no ```json excerpt"
    record = (RESULTS / "demo-rollout.json").read_text()
    fragments = quoted_fragments(excerpt.group(1))
    assert len(fragments) >= 8
    missing = [piece for piece in fragments if piece not in record]
    assert missing == [], f"not in docs/results/demo-rollout.json: {missing}"


def test_an_excerpt_fragment_the_record_lacks_is_caught() -> None:
    planted = '"detail": "evidence there: 999 spam and 507 ham labels since the last retrain (…)"'
    (fragment,) = quoted_fragments(planted)
    assert fragment == "evidence there: 999 spam and 507 ham labels since the last retrain"
    assert fragment not in (RESULTS / "demo-rollout.json").read_text()
