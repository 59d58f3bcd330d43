"""Language families: ``families.csv``, one row per language Whisper can output.

Each row: the code Whisper outputs, its ISO 639-1 code, English name, Glottolog top-level
family and a well-known branch on its Glottolog path (source and version in the file's
header). ``lookup`` also accepts ISO 639-1 codes that differ from Whisper's (``jv``) and
region/script suffixes (``zh-CN``, ``pt_BR``).
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from functools import lru_cache
from importlib import resources

from talkbench.errors import TalkbenchError

INDO_EUROPEAN = "Indo-European"
UNKNOWN = "unknown"
FILE = "families.csv"


@dataclass(frozen=True)
class Language:
    code: str  # as Whisper outputs it
    iso639_1: str
    name: str
    family: str
    branch: str
    notes: str = ""

    @property
    def indo_european(self) -> bool:
        return self.family == INDO_EUROPEAN

    def to_dict(self) -> dict:
        return asdict(self) | {"indo_european": self.indo_european}


def _text() -> str:
    return resources.files(__package__).joinpath(FILE).read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def source() -> str:
    """The header comment lines of families.csv (source, version, column meanings)."""
    return "\n".join(line[1:].strip() for line in _text().splitlines() if line.startswith("#"))


@lru_cache(maxsize=1)
def families() -> dict[str, Language]:
    """Whisper code -> Language, in file order."""
    lines = [line for line in _text().splitlines() if line.strip() and not line.startswith("#")]
    out: dict[str, Language] = {}
    expected = ["code", "iso639_1", "name", "family", "branch", "notes"]
    reader = csv.DictReader(lines)
    if reader.fieldnames != expected:
        raise TalkbenchError(f"{FILE}: header is {reader.fieldnames}, expected {expected}")
    for n, row in enumerate(reader, start=2):
        if not row["code"] or not row["family"] or not row["name"]:
            raise TalkbenchError(f"{FILE}: row {n} ({row}) lacks a code, name or family")
        if row["code"] in out:
            raise TalkbenchError(f"{FILE}: code {row['code']!r} appears twice")
        out[row["code"]] = Language(**{k: (row[k] or "").strip() for k in expected})
    return out


@lru_cache(maxsize=1)
def _aliases() -> dict[str, str]:
    table = families()
    return {lang.iso639_1: code for code, lang in table.items() if lang.iso639_1 and lang.iso639_1 not in table}


def normalise(code: str | None) -> str | None:
    """The Whisper code for ``code`` (case, region suffix and ISO aliases handled), or the
    cleaned code itself when the table does not know it; None for empty input."""
    if code is None:
        return None
    c = str(code).strip().lower().replace("_", "-")
    if not c:
        return None
    table = families()
    if c in table:
        return c
    base = c.split("-")[0]
    if base in table:
        return base
    return _aliases().get(base, base)


def lookup(code: str | None) -> Language | None:
    """The Language of a code, or None when the table does not know it."""
    c = normalise(code)
    return families().get(c) if c else None


def family_of(code: str | None) -> str:
    lang = lookup(code)
    return lang.family if lang else UNKNOWN


def is_indo_european(code: str | None) -> bool:
    return family_of(code) == INDO_EUROPEAN


def name_of(code: str | None) -> str:
    lang = lookup(code)
    return lang.name if lang else (code or "")
