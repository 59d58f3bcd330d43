"""Method names on the leaderboard: one normalised key per name, and who holds it.

- ``name_key`` folds case, accents, punctuation, full-width forms, the Cyrillic/Greek letters
  that look like Latin ones and the ASCII look-alikes (i, l, 1 and |; 0 and o), so
  ``Sad-Talker``, ``sadtalker``, ``SаdTalker`` (Cyrillic а) and ``SadTaIker`` (capital I) are
  one name. Folding more than the eye does only costs a newcomer another name; folding less
  would let one pass for a published method.
- A name is held by an owner: ``builtin``, ``external``, ``reported`` (talkbench's own, whose
  writers are never refused) or ``submitter:<sha256 of the submitter key>``. Submissions
  stored before keys existed are held by ``unkeyed``, which no key can use.
- The submitter key is a secret token (at least ``MIN_KEY_LENGTH`` characters) from
  ``--key-file`` or ``$TALKBENCH_SUBMITTER_KEY``; only its sha256 is stored.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from talkbench.baselines.external import all_presets
from talkbench.baselines.registry import method_names
from talkbench.errors import TalkbenchError
from talkbench.leaderboard.paper import TABLES

KEY_ENV = "TALKBENCH_SUBMITTER_KEY"
MIN_KEY_LENGTH = 16
SYSTEM_OWNERS = ("builtin", "external", "reported")
UNKEYED = "unkeyed"
# the reference rows (the ground truth): shown on the boards, never ranked
REFERENCE_METHODS = ("ground-truth", "GT")
MAKE_KEY = "python -c \"import secrets; print(secrets.token_urlsafe(32))\" > ~/.talkbench-key"

# Letters of other scripts that render like a Latin letter (after case folding). Upper-case
# look-alikes are covered by their lower-case forms: casefold runs first.
_CONFUSABLES = str.maketrans({
    # Cyrillic
    "а": "a", "в": "b", "ԁ": "d", "е": "e", "һ": "h", "н": "h", "і": "i", "ј": "j", "к": "k",
    "ӏ": "l", "м": "m", "о": "o", "р": "p", "ԛ": "q", "ѕ": "s", "т": "t", "у": "y", "ү": "y", "х": "x", "с": "c", "ԝ": "w", "ѵ": "v", "ь": "b", "з": "3",
    # Greek
    "α": "a", "β": "b", "ε": "e", "η": "h", "ι": "i", "κ": "k", "μ": "m", "ν": "v", "ο": "o",
    "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "γ": "y", "ζ": "z", "ϲ": "c", "ϳ": "j", "ω": "w",
    # Armenian
    "օ": "o", "ս": "u", "ց": "g", "հ": "h", "ռ": "n",
    # Latin letters that look like others
    "ı": "i", "ȷ": "j", "ſ": "s", "ɑ": "a", "ɡ": "g", "ɩ": "i", "ʏ": "y",
})


# ASCII characters that look alike in common fonts (``SadTaIker`` with a capital I, ``EM0``
# with a zero): after case folding, i, l, 1 and | are one letter, and 0 is o.
_LOOK_ALIKE_ASCII = str.maketrans({"i": "l", "1": "l", "|": "l", "0": "o"})


class SubmitterKeyError(TalkbenchError):
    """A submitter key that is missing, unreadable or too short."""


class NameTakenError(TalkbenchError):
    """A method name whose key is held by another owner (or by the same one, spelled another
    way); nothing was stored. ``reason`` is the message without the place it came from."""

    def __init__(self, where: str, reason: str):
        self.reason = reason
        super().__init__(f"{where}: {reason} (nothing was stored)")


def name_key(name: str) -> str:
    """The key two method names share when they would read as one name on the board."""
    text = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", name))
    text = "".join(ch for ch in text if not unicodedata.combining(ch))  # accents: é → e
    text = unicodedata.normalize("NFKC", text).casefold().translate(_CONFUSABLES).translate(_LOOK_ALIKE_ASCII)
    return "".join(ch for ch in text if ch.isalnum())


def name_slug(name: str) -> str:
    """A file name for the method ``name`` (the site's ``methods/<slug>.html``): its ASCII
    letters and digits, lower case, runs of anything else as ``-``. Names the store holds apart
    (another ``name_key``) get other slugs: an ASCII name's slug keeps all its key's letters, and
    a name with letters the slug drops (another script) gets its key's hash after them."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "method"
    key = name_key(name)
    if re.sub(r"[^a-z0-9]", "", slug.translate(_LOOK_ALIKE_ASCII)) != key:
        slug += "-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:8]
    return slug


def refusal(name: str, holder_name: str, holder: str, claimant: str) -> str | None:
    """Why ``claimant`` may not store under ``name`` when ``holder`` holds its key (first
    spelled ``holder_name``); None when it may. A submitter shares with nobody, and must keep
    the spelling of its first claim. talkbench's own writers (built-in runs, the papers' rows)
    are never refused: a name a later talkbench reserves that a submitter already holds stays
    the submitter's, but cannot stop the store from loading the papers' tables."""
    if claimant in SYSTEM_OWNERS:
        return None
    if holder == claimant:
        if holder_name != name:
            return (f"method name {name!r} is taken by a submitted method ({holder_name!r}): your own, "
                    f"so submit under that exact spelling")
        return None
    if holder in ("builtin", "external"):
        return f"method name {name!r} is reserved for a built-in or external method ({holder_name!r})"
    if holder == "reported":
        return f"method name {name!r} is taken by a reported method ({holder_name!r}) from the papers' tables"
    if holder == UNKEYED:
        return (f"method name {name!r} is taken by a submitted method ({holder_name!r}) stored before "
                "submitter keys existed, which no key can add runs to")
    if claimant.startswith("submitter:"):
        return (f"method name {name!r} is taken by a submitted method ({holder_name!r}) under another "
                "submitter key; only the key that first submitted it can add runs to it")
    return f"method name {name!r} is taken by a submitted method ({holder_name!r})"


@dataclass(frozen=True)
class SubmitterKey:
    """A submitter's secret token; only ``owner`` (its sha256) is ever stored."""

    secret: str
    source: str = "the submitter key"

    def __post_init__(self):
        if len(self.secret) < MIN_KEY_LENGTH:
            raise SubmitterKeyError(f"{self.source}: a submitter key needs at least {MIN_KEY_LENGTH} characters "
                                    f"(it has {len(self.secret)}); make one with: {MAKE_KEY}")

    @property
    def owner(self) -> str:
        return "submitter:" + hashlib.sha256(self.secret.encode("utf-8")).hexdigest()

    def __repr__(self) -> str:  # never print the secret
        return f"SubmitterKey(source={self.source!r}, owner={self.owner[:22]}…)"


def load_submitter_key(key_file: str | Path | None = None) -> SubmitterKey:
    """The key in ``key_file`` (its first line), else in ``$TALKBENCH_SUBMITTER_KEY``."""
    if key_file is not None:
        try:
            text = Path(key_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SubmitterKeyError(f"{key_file}: cannot read the submitter key ({exc})") from None
        lines = text.strip().splitlines()
        return SubmitterKey(lines[0].strip() if lines else "", f"{key_file} (--key-file)")
    secret = os.environ.get(KEY_ENV, "").strip()
    if not secret:
        raise SubmitterKeyError(
            f"a submission needs a submitter key (--key-file or ${KEY_ENV}): it makes the method name "
            f"yours, and later runs under that name need the same key; make one with: {MAKE_KEY}"
        )
    return SubmitterKey(secret, f"${KEY_ENV}")


@functools.lru_cache(maxsize=1)
def reserved_names() -> tuple[tuple[str, str], ...]:
    """(name, owner) of every name talkbench itself uses: built-in methods and the reference
    rows (``builtin``), external presets and their aliases (``external``), and every method in
    the papers' tables (``reported``)."""
    # a runnable preset sits in the method registry too, once registered: it stays ``external``
    external = [name for p in all_presets() for name in (p.name, *p.aliases)]
    out = [(name, "builtin") for name in (*method_names(), *REFERENCE_METHODS) if name not in external]
    out += [(name, "external") for name in external]
    out += [(row["method"], "reported") for t in TABLES for row in t.rows()]
    return tuple(dict.fromkeys(out))
