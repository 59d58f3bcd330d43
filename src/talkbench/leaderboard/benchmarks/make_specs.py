"""How the shipped benchmark specs were made (run once per new version; never edit a shipped
spec's clip list in place). ``python -m talkbench.leaderboard.benchmarks.make_specs OUT_DIR
[--hdtf-manifests DIR]`` writes the YAML files.

- ``sample`` v2: the eight clips of the embedded sample corpus, frame counts and sha256 pinned.
  (v1 was the earlier corpus with espeak-ng speech; superseded when real speech replaced it.)
- ``mnte`` v1: the paper's quota, 5 clips in each of Arabic, Swahili, Mandarin, Korean,
  Japanese, Turkish, with ids ``mnte_<lang>_<nnn>``; an MNTE manifest for
  ``talkbench data build mnte`` must use these ids. MNTE is not public, so the references are
  the user's; their sha256 is recorded per run in the store (``clips.reference_sha256`` and the
  run protocol), so runs on different MNTE builds never rank together.
- ``hdtf-test`` v1: DINet's HDTF test list is not published (its repository ships only the
  training list, inside a Google-Drive archive), so talkbench fixes its own: every clip id of
  the official HDTF lists (MRzzm/HDTF, commit bbde889) ordered by
  sha256("talkbench/hdtf-test/v1/" + clip id), keeping the first clip of each person until 20
  people are chosen. Deterministic, identity-disjoint, documented; a different list is v2.
- ``mead-emotion`` v1: MEAD's four test identities of the emotional talking-head code (EAT,
  EDTalk: M003, M030, W009, W015), front view; each of the seven emotions at its strongest
  level (3) and neutral (level 1 only), sentences 001–005: 4 × 8 × 5 = 160 clips, ids as
  ``talkbench data build mead`` names them. Why these: ``docs/datasets/mead.md``.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import replace
from pathlib import Path

import yaml

from talkbench.datasets.sources.hdtf import load_hdtf
from talkbench.leaderboard.benchmarks import INDO_EUROPEAN, BenchmarkClip, clip_list_sha256
from talkbench.samples import load_sample_corpus, sample_dir
from talkbench.util import atomic_write_text, sha256_file

FAMILIES = {
    "ar": "Afro-Asiatic", "sw": "Niger-Congo", "zh": "Sino-Tibetan", "ko": "Koreanic",
    "ja": "Japonic", "tr": "Turkic", "en": INDO_EUROPEAN, "de": INDO_EUROPEAN,
}
MNTE_LANGUAGES = ("ar", "sw", "zh", "ko", "ja", "tr")
MEAD_TEST_IDENTITIES = ("M003", "M030", "W009", "W015")
MEAD_EMOTIONS = ("angry", "contempt", "disgusted", "fear", "happy", "neutral", "sad", "surprised")
MEAD_SENTENCES = 5
HDTF_TEST_PEOPLE = 20
HDTF_SALT = "talkbench/hdtf-test/v1/"


def _dump(spec: dict, out: Path) -> Path:
    clips = [BenchmarkClip(**c) for c in spec["clips"]]
    spec["clip_list_sha256"] = clip_list_sha256(clips)
    order = [k for k in spec if k != "clips"] + ["clips"]
    path = out / f"{spec['name']}-v{spec['version']}.yaml"
    atomic_write_text(path, yaml.safe_dump({k: spec[k] for k in order}, sort_keys=False, allow_unicode=True, width=100))
    return path


def sample_spec() -> dict:
    meta = {e["id"]: e for e in json.loads((sample_dir() / "samples.json").read_text())["clips"]}
    clips = [
        BenchmarkClip.from_clip(replace(c, family=FAMILIES[c.language]), frames=meta[c.id]["frames"],
                                reference_sha256=sha256_file(c.video)).model_dump(exclude_none=True)
        for c in load_sample_corpus()
    ]
    return {
        "name": "sample", "version": "2",
        "description": "The embedded sample corpus: 8 clips (ar, sw, zh, ko, ja, tr, en, de) of real photos "
        "animated by real speech (tr: espeak-ng); runs with nothing downloaded. Indo-European: en, de.",
        "source": "package:sample", "dataset": "sample", "revision": "talkbench 0.1.0 samples.json",
        "tasks": ["speech-driven", "reconstruction"], "main_score": "ssim",
        "languages": sorted({c["language"] for c in clips}), "fps": 25.0,
        "licence": "see talkbench/samples/samples.json (photos from scikit-image / matplotlib; speech MIT or "
        "Apache-2.0 excerpts, attributed per clip; tr synthesised by espeak-ng)",
        "selection": "all clips of the sample corpus", "clips": clips,
    }


def mnte_spec() -> dict:
    clips = [{"id": f"mnte_{lang}_{i:03d}", "language": lang, "family": FAMILIES[lang]}
             for lang in MNTE_LANGUAGES for i in range(1, 6)]
    return {
        "name": "mnte", "version": "1",
        "description": "MNTE (VQTalker): non-Indo-European talking faces, 5 clips in each of Arabic, Swahili, "
        "Mandarin, Korean, Japanese and Turkish, each >= 3 s, language confirmed by Whisper, face >= 512 px.",
        "source": "catalog", "dataset": "mnte", "revision": "VQTalker (AAAI 2025) section 4 quota",
        "tasks": ["speech-driven"], "main_score": "ssim", "languages": list(MNTE_LANGUAGES), "fps": 25.0,
        "licence": "clips are the user's; the paper's MNTE is not public",
        "citation": "Liu et al., VQTalker: Towards Multilingual Talking Avatars through Facial Motion Tokenization, AAAI 2025",
        "selection": "ids mnte_<lang>_001..005; the MNTE manifest given to 'talkbench data build mnte' must use them",
        "clips": clips,
    }


def hdtf_spec(manifests: Path) -> dict:
    specs = sorted(load_hdtf(manifests), key=lambda s: hashlib.sha256((HDTF_SALT + s.clip_id).encode()).hexdigest())
    chosen, people = [], set()
    for s in specs:
        if s.person in people:
            continue
        people.add(s.person)
        chosen.append({"id": s.clip_id, "language": "en", "family": INDO_EUROPEAN,
                       "duration": (s.end - s.start) if s.end is not None else None})
        if len(chosen) == HDTF_TEST_PEOPLE:
            break
    return {
        "name": "hdtf-test", "version": "1",
        "description": "HDTF test split (Indo-European reference for VQTalker Tables 1-4): 20 clips of 20 "
        "different people from the official HDTF lists.",
        "source": "catalog", "dataset": "hdtf", "revision": "MRzzm/HDTF HDTF_dataset @ bbde889bbab954c9a9ebcabe9962885c29f2165e",
        "tasks": ["speech-driven", "reconstruction"], "main_score": "ssim", "languages": ["en"], "fps": 25.0,
        "licence": "HDTF: CC BY 4.0 (per its README); videos from YouTube",
        "citation": "Zhang et al., Flow-guided One-shot Talking Face Generation with a High-resolution Audio-visual Dataset, CVPR 2021",
        "selection": "DINet's test list is not published; clip ids ordered by sha256('talkbench/hdtf-test/v1/' + id), "
        "first clip of each person until 20 people (talkbench.leaderboard.benchmarks.make_specs)",
        "clips": chosen,
    }


def mead_spec() -> dict:
    clips = []
    for person in MEAD_TEST_IDENTITIES:
        for emotion in MEAD_EMOTIONS:
            level = 1 if emotion == "neutral" else 3
            clips += [{"id": f"{person}_front_{emotion}_level_{level}_{n:03d}", "language": "en",
                       "family": INDO_EUROPEAN, "emotion": emotion, "intensity": level}
                      for n in range(1, MEAD_SENTENCES + 1)]  # fmt: skip
    return {
        "name": "mead-emotion", "version": "1",
        "description": "MEAD emotional talking faces (FlowVQTalker Table 1): the four test identities of the "
        "public emotional talking-head code, front view, 8 emotions (7 at level 3, neutral at level 1), "
        "5 sentences each; clips carry their emotion label.",
        "source": "catalog", "dataset": "mead", "revision": "MEAD (Wang et al., ECCV 2020) as distributed per identity",
        "tasks": ["speech-driven"], "labels": ["emotion"], "board_values": ["m_lmd", "f_lmd"], "main_score": "acc_emo", "languages": ["en"], "fps": 25.0,
        "licence": "MEAD: research use under its licence agreement; the clips are the user's download",
        "citation": "Wang et al., MEAD: A Large-scale Audio-visual Dataset for Emotional Talking-face Generation, ECCV 2020",
        "selection": "identities M003, M030, W009, W015 (EAT test_mead.py, EDTalk lists/test.json); front view; "
        "level 3 for the 7 emotions, level 1 for neutral; sentences 001-005 (docs/datasets/mead.md)",
        "clips": clips,
    }


def main(argv: list[str]) -> None:
    out = Path(argv[0]) if argv else Path(__file__).parent
    manifests = Path(argv[argv.index("--hdtf-manifests") + 1]) if "--hdtf-manifests" in argv else None
    print(_dump(sample_spec(), out))
    print(_dump(mnte_spec(), out))
    print(_dump(mead_spec(), out))
    if manifests:
        print(_dump(hdtf_spec(manifests), out))


if __name__ == "__main__":
    main(sys.argv[1:])
