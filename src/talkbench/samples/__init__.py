"""The sample corpus: a tiny multilingual benchmark the project generates itself and ships
inside the package, so the demo and the tests run with nothing downloaded.

Eight clips of 3-5 s at 25 fps, 512x512, with 16 kHz speech in Arabic, Swahili, Mandarin, Korean,
Japanese, Turkish, English and German. The speech is real (short excerpts of MIT/Apache-2.0
recordings, attributed in ``samples.json``), except Turkish, which espeak-ng synthesises; the face
is a real photo that ships with a dependency, its jaw and lips driven by the speech envelope.
``generate.py`` made them; ``samples.json`` lists them with each clip's source and licence.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from talkbench.clip import Clip

DATASET = "sample"


def sample_dir() -> Path:
    return Path(str(resources.files(__name__)))


def load_sample_corpus() -> list[Clip]:
    """The sample clips, in the order of ``samples.json``."""
    root = sample_dir()
    entries = json.loads((root / "samples.json").read_text())["clips"]
    return [
        Clip(
            id=e["id"],
            dataset=DATASET,
            language=e["language"],
            duration=e["duration"],
            video=root / e["file"],
            provenance={k: e[k] for k in ("portrait", "speech", "generator")},
        )
        for e in entries
    ]
