"""The docs' checked numbers: parse the `<!-- value: ... -->` spans, check them, refresh them.

A checked span is an HTML comment right before the number it checks:

    <!-- value: bench-serving.json data.summary.ratio_closed_loop -->4.0x

`FILE` is a file in docs/results/; `PATH` walks it by dotted keys (list items by index; in a
table `{caption, columns, rows}`, the next key picks the row whose first cell reads so and the
one after it the column; a row number where first cells repeat). Options after the path:
`/regex/` takes group 1 of a text value, `x100` checks a share written as a percentage.

Rounding rule: the doc may round the file's value to the decimals it writes (half a unit of the
last written digit); thousands separators, a leading `+` and a minus sign (`-` or the
typographic one) are read as numbers. A text value must be the text that follows.

`check_span` says whether one span agrees with its file (tests/unit/test_docs_numbers.py runs it
over every doc); `refresh_values` rewrites the stale numbers of a document the way it writes
them (`make report` runs it after copying fresh results files).
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

# `after` stops at the next comment: a span right behind another is a span of its own
SPAN = re.compile(r"<!-- value: (?P<spec>.+?) -->(?P<after>(?:(?!<!--)[^\n]){0,80})")
MINUS = "\u2212"  # the typographic minus sign
# a comma right after a number ("423, then") is the sentence's, not a thousands separator
NUMBER = re.compile(rf"\s*(?P<num>[+\-{MINUS}]?\d(?:[\d,]*\d)?(?:\.\d+)?)")


@dataclass(frozen=True)
class Span:
    """One checked number: where it is, what it names, what the doc says."""

    doc: str
    file: str
    path: str
    regex: str | None
    scale: float
    after: str
    at: int = 0  # where `after` starts in the document's text

    @property
    def where(self) -> str:
        return f"{self.doc}: {self.file} {self.path}"


def parse_spans(text: str, doc: str) -> list[Span]:
    """Every `<!-- value: ... -->` span of a document."""
    spans = []
    for match in SPAN.finditer(text):
        spec = match.group("spec").strip()
        scale = 1.0
        if spec.endswith(" x100"):
            spec, scale = spec.removesuffix(" x100").rstrip(), 100.0
        regex = None
        found = re.search(r" /(.+)/$", spec)
        if found:
            regex, spec = found.group(1), spec[: found.start()].rstrip()
        file, _, path = spec.partition(" ")
        after = match.group("after")
        spans.append(Span(doc, file, path.strip(), regex, scale, after, match.start("after")))
    return spans


def _row(table: dict[str, Any], label: str) -> list[Any]:
    for row in table["rows"]:
        if str(row[0]) == label or (isinstance(row[0], (int, float)) and f"{row[0]:,}" == label):
            return list(row)
    if label.isdigit() and int(label) < len(table["rows"]):
        return list(table["rows"][int(label)])  # rows whose first cell repeats, by position
    raise KeyError(f"no row {label!r} in table {table.get('caption', '')!r}")


def lookup(record: Any, path: str) -> Any:
    """Walk `path` (dotted; list indices; table row label then column name) into `record`."""
    node: Any = record
    keys = path.split(".") if path else []
    i = 0
    while i < len(keys):
        key = keys[i]
        if isinstance(node, dict) and {"columns", "rows"} <= node.keys() and key not in node:
            row = _row(node, key)
            if i + 1 == len(keys):
                return row
            column = keys[i + 1]
            node = row[node["columns"].index(column)]
            i += 2
            continue
        if isinstance(node, list):
            node = node[int(key)]
        elif isinstance(node, dict) and key in node:
            node = node[key]
        else:
            # a key that itself holds dots ("held-out history" never does; "0.1" might)
            joined = next(
                (
                    ".".join(keys[i:j])
                    for j in range(len(keys), i + 1, -1)
                    if isinstance(node, dict) and ".".join(keys[i:j]) in node
                ),
                None,
            )
            if joined is None:
                raise KeyError(f"{key!r} not found")
            node, i = node[joined], i + joined.count(".") + 1
            continue
        i += 1
    return node


class Unresolved(Exception):
    """A span whose value cannot be read: no results file, no such path, no regex match."""


def span_value(span: Span, results: Path) -> Any:
    """The value `span` names in `results` (a number, scaled, or a text)."""
    source = results / span.file
    if not source.exists():
        raise Unresolved(f"no results file {source.name}")
    try:
        value = lookup(json.loads(source.read_text()), span.path)
    except (KeyError, IndexError, ValueError) as error:
        raise Unresolved(str(error.args[0]) if error.args else str(error)) from error
    if span.regex is not None:
        found = re.search(span.regex, str(value))
        if found is None:
            raise Unresolved(f"/{span.regex}/ does not match {value!r}")
        value = found.group(1)
        with contextlib.suppress(ValueError):
            value = float(value)
    if _is_number(value):
        return float(value) * span.scale
    return str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _as_number(written: str) -> float:
    return float(written.replace(",", "").replace(MINUS, "-").lstrip("+"))


def _decimals(written: str) -> int:
    return len(written.split(".", 1)[1]) if "." in written else 0


def check_span(span: Span, results: Path) -> str | None:
    """None when the doc agrees with the file in `results`, else what disagrees."""
    try:
        value = span_value(span, results)
    except Unresolved as error:
        return f"{span.where}: {error}"
    if isinstance(value, str):
        ok = span.after.lstrip().startswith(value)
        return None if ok else f"{span.where}: file says {value!r}, doc says {span.after[:30]!r}"
    number = NUMBER.match(span.after)
    if number is None:
        return f"{span.where}: no number after the span ({span.after[:30]!r})"
    written = number.group("num")
    if abs(_as_number(written) - value) > 0.5 * 10 ** -_decimals(written) + 1e-9:
        return f"{span.where}: file says {value:g}, doc says {written}"
    return None


def write_like(value: float, old: str) -> str:
    """`value` written the way the doc wrote `old`: its decimals, its thousands separators (or
    separators when `old` was too short to show them, as the docs write every number from
    1,000 up), its leading `+`, its kind of minus."""
    decimals = _decimals(old)
    integer_digits = len(old.split(".", 1)[0].lstrip(f"+-{MINUS}").replace(",", ""))
    separators = "," in old or integer_digits < 4
    magnitude = f"{abs(value):{',' if separators else ''}.{decimals}f}"
    if float(magnitude.replace(",", "")) == 0:  # no "-0.0"
        value = 0.0
    if value < 0:
        return (MINUS if MINUS in old else "-") + magnitude
    return ("+" if old.startswith("+") else "") + magnitude


class Refresh(NamedTuple):
    """A document with its stale numbers rewritten, what changed, what was left alone."""

    text: str
    changed: list[str]
    left_alone: list[str]


def _rewrite(span: Span, value: Any, previous: Path | None) -> tuple[str, str] | str:
    """(old text, new text) at the start of `span.after`, or why it is left alone."""
    if isinstance(value, str):
        old = _previous_text(span, previous)
        written = span.after.lstrip()
        if old is None or not written.startswith(old):
            return (
                f"file says {value!r}, doc says {written[:30]!r}, and the text the doc wrote "
                "is not the previous value: left alone"
            )
        return old, value
    number = NUMBER.match(span.after)
    if number is None:
        return f"no number after the span ({span.after[:30]!r}): left alone"
    written = number.group("num")
    return written, write_like(value, written)


def _previous_text(span: Span, previous: Path | None) -> str | None:
    """The text value the span named before the results were refreshed, if known."""
    if previous is None:
        return None
    try:
        value = span_value(span, previous)
    except Unresolved:
        return None
    return value if isinstance(value, str) else None


def refresh_values(
    text: str, results: Path, doc: str = "<doc>", previous: Path | None = None
) -> Refresh:
    """Rewrite each stale checked number of `text` to its file's value in `results`.

    A number keeps how the doc writes it (see `write_like`); `x100` scales. A text value
    replaces the doc's text only where that text is the value `previous` (the results as they
    were before the refresh) holds, the same length of it; otherwise the span is reported, not
    guessed at. Spans already in agreement, and spans whose file or path is missing, are left
    as they are (the missing ones reported). Changes read "DOC: FILE PATH: old -> new".
    """
    pieces, changed, left_alone = [], [], []
    done = 0
    for span in parse_spans(text, doc):
        if check_span(span, results) is None:
            continue
        try:
            value = span_value(span, results)
        except Unresolved as error:
            left_alone.append(f"{span.where}: {error}: left alone")
            continue
        rewrite = _rewrite(span, value, previous)
        if isinstance(rewrite, str):
            left_alone.append(f"{span.where}: {rewrite}")
            continue
        old, new = rewrite
        if old == new:  # the file's value rounds to what the doc writes, yet it disagrees
            left_alone.append(f"{check_span(span, results)}: left alone")
            continue
        start = span.at + span.after.index(old)
        pieces.extend([text[done:start], new])
        done = start + len(old)
        changed.append(f"{span.where}: {old} -> {new}")
    pieces.append(text[done:])
    return Refresh("".join(pieces), changed, left_alone)
