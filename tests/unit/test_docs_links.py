"""The docs hold together: every relative link in README.md and docs/ resolves, and no file
cites a document the repository does not have."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from modstack.report import documents

ROOT = Path(__file__).resolve().parents[2]
DOCS = documents(ROOT / "docs")  # the set `make report` refreshes
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
# a document named in prose or code ("see design.md"), not only in a Markdown link
DOCUMENT = re.compile(r"\b[\w.-]+\.md\b")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(doc: Path) -> None:
    broken = []
    for target in LINK.findall(doc.read_text()):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue  # external or in-page
        path = (doc.parent / target.split("#", 1)[0]).resolve()
        if not path.exists():
            broken.append(target)
    assert broken == [], f"{doc.relative_to(ROOT)} links to missing files: {broken}"


def test_no_tracked_file_cites_a_document_the_repo_lacks() -> None:
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    documents = {Path(name).name for name in tracked if name.endswith(".md")}
    offenders = []
    for name in tracked:
        path = ROOT / name
        if path.suffix not in {".py", ".md", ".yml", ".yaml", ".toml", ""} or not path.is_file():
            continue
        text = path.read_text(errors="replace")
        cited = {Path(doc).name for doc in DOCUMENT.findall(text)}
        offenders += [f"{name}: {doc}" for doc in sorted(cited - documents)]
    assert offenders == []


def test_test_modules_have_unique_names() -> None:
    """pytest imports test folders without packages by basename: two test_x.py files in
    different folders collide on a fresh checkout (no cached bytecode to hide it)."""
    names = [p.name for p in (ROOT / "tests").rglob("test_*.py")]
    assert sorted({n for n in names if names.count(n) > 1}) == []
