"""The papers' published numbers (CSV, transcribed from the PDFs; see README.md here) and the
layout of each table: which columns identify a row, which are attributes (resolution,
bitrate, groups, ...) and which are metrics (their directions: ``leaderboard.directions``).

These are shipped as package data and loaded into the store as ``reported`` runs
(``talkbench.leaderboard.reported``); ``talkbench.leaderboard.tables`` renders them back in the
papers' own layout.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from importlib import resources

VQTALKER = "VQTalker"
FLOWVQTALKER = "FlowVQTalker"
PAPERS = {"vqtalker": VQTALKER, "flowvqtalker": FLOWVQTALKER}


@dataclass(frozen=True)
class Column:
    key: str  # CSV column
    header: str  # as printed in the paper
    kind: str  # 'attribute' | 'metric'
    # Declared only for a metric column nothing in talkbench measures (the user study's scores);
    # a measured column's direction is its metric's (``leaderboard.directions``).
    higher_is_better: bool | None = None


@dataclass(frozen=True)
class PaperTable:
    paper: str  # VQTALKER | FLOWVQTALKER
    number: str  # "1", "2", ...
    csv: str
    title: str
    task: str
    benchmark: str | None  # the benchmark every row is on, when the CSV has no dataset column
    columns: tuple[Column, ...]
    dataset_column: str | None = None  # long CSVs: one row per (method, dataset)
    # wide layout: dataset value -> (printed group header, benchmark name); in order
    groups: tuple[tuple[str, str, str], ...] = ()
    reference_rows: tuple[str, ...] = ()  # rows never ranked (the ground truth)
    note: str = ""

    @property
    def key(self) -> str:
        return f"{self.paper.lower()}:{self.number}"

    @property
    def benchmarks(self) -> tuple[str, ...]:
        """The talkbench benchmarks its rows are on."""
        return tuple(g[2] for g in self.groups) if self.groups else ((self.benchmark,) if self.benchmark else ())

    @property
    def metrics(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if c.kind == "metric")

    @property
    def attributes(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if c.kind == "attribute")

    def rows(self) -> list[dict[str, str]]:
        """The CSV rows as printed (strings; '' = not reported)."""
        text = (resources.files(__name__) / self.csv).read_text(encoding="utf-8")
        return list(csv.DictReader(text.splitlines()))


def _m(key: str, header: str) -> Column:
    """A metric column talkbench measures: its direction is the metric's."""
    return Column(key, header, "metric")


def _score(key: str, header: str, up: bool) -> Column:
    """A metric column nothing in talkbench measures, with the direction the paper gives it."""
    return Column(key, header, "metric", up)


def _a(key: str, header: str) -> Column:
    return Column(key, header, "attribute")


TABLES: tuple[PaperTable, ...] = (
    PaperTable(
        VQTALKER, "1", "vqtalker_table1_reconstruction_hdtf.csv",
        "Video reconstruction on HDTF (256² evaluation)", "reconstruction", "hdtf-test",
        (_a("resolution", "Reso."), _a("bitrate_kbps", "Bitrate"), _m("ssim", "SSIM"),
         _m("lpips", "LPIPS"), _m("csim", "CSIM"), _m("cpbd", "CPBD")),
        note="Bitrate in kbps; the paper prints ≈ before 347, 50, 102 and 11.",
    ),
    PaperTable(
        VQTALKER, "2", "vqtalker_table2_speech_driven.csv",
        "Speech-driven comparison on HDTF (Indo-European) and MNTE (non-Indo-European)",
        "speech-driven", None,
        (_m("ssim", "SSIM"), _m("csim", "CSIM"), _m("lmd", "LMD"),
         _m("cpbd", "CPBD"), _m("fid", "FID"), _m("fvd", "FVD")),
        dataset_column="dataset",
        groups=(("HDTF", "HDTF (Indo-European)", "hdtf-test"), ("MNTE", "MNTE (Non-Indo-European)", "mnte")),
    ),
    PaperTable(
        VQTALKER, "3", "vqtalker_table3_quantizer_ablation.csv",
        "Vector quantisation ablation, HDTF cross-identity driven", "cross-identity", "hdtf-test",
        (_a("groups", "# G"), _a("residuals", "# R"), _a("fsq", "FSQ"), _a("codes", "# Codes"),
         _a("bitrate_kbps", "Bitrate"), _m("csim", "CSIM"), _m("msi", "MSI"),
         _m("utilization_pct", "Util.(%)")),
        note="Util.: codebook utilisation, codes used at least once.",
    ),
    PaperTable(
        VQTALKER, "4", "vqtalker_table4_discrete_continuous.csv",
        "Discrete (D) vs continuous (C) representations, X-Y = audio input - motion output",
        "speech-driven", "hdtf-test",
        (_a("audio_feature", "Audio Feature"), _a("motion_feature", "Motion Feature"),
         _m("ssim", "SSIM"), _m("csim", "CSIM"), _m("lpips", "LPIPS"),
         _m("cpbd", "CPBD")),
    ),
    PaperTable(
        VQTALKER, "7", "vqtalker_table7_bitrate.csv",
        "How each bitrate is computed (25 fps, 32-bit floats)", "reconstruction", "hdtf-test",
        (_a("resolution", "Reso."), _a("bitrate_kbps", "Bitrate"), _a("calculation", "Equation")),
    ),
    PaperTable(
        VQTALKER, "8", "vqtalker_table8_user_study.csv",
        "User study (20 participants, 1-5)", "speech-driven", "user-study",
        (_score("lip_sync", "LS", True), _score("visual_appeal", "VA", True),
         _score("prompt_following", "PF", True), _score("naturalness", "N", True)),
    ),
    PaperTable(
        FLOWVQTALKER, "1", "flowvqtalker_table1.csv",
        "Emotional talking faces on MEAD and HDTF", "speech-driven", None,
        (_m("ssim", "SSIM"), _m("fid", "FID"), _m("m_lmd", "M-LMD"),
         _m("f_lmd", "F-LMD"), _m("sync_conf", "Sync_conf"), _m("cpbd", "CPBD"),
         _m("acc_emo_pct", "Acc_emo(%)")),
        dataset_column="dataset",
        groups=(("MEAD", "MEAD", "mead-emotion"), ("HDTF", "HDTF", "hdtf-test")),
        reference_rows=("GT",),
        note="Sync_conf = SyncNet confidence; Acc_emo only on MEAD. GT is the reference, not ranked.",
    ),
)


def table(paper: str, number: str | int) -> PaperTable:
    name = PAPERS.get(paper.lower(), paper)
    for t in TABLES:
        if t.paper == name and t.number == str(number):
            return t
    raise KeyError(f"no table {number} for paper {paper!r}; known: {[t.key for t in TABLES]}")


def table_by_key(key: str) -> PaperTable:
    """By ``PaperTable.key`` ("vqtalker:2")."""
    paper, _, number = key.partition(":")
    return table(paper, number)


def tables_of(paper: str) -> list[PaperTable]:
    name = PAPERS.get(paper.lower())
    if name is None:
        raise KeyError(f"unknown paper {paper!r}; choose from {', '.join(PAPERS)}")
    return [t for t in TABLES if t.paper == name]


def csv_text(name: str) -> str:
    return (resources.files(__name__) / name).read_text(encoding="utf-8")
