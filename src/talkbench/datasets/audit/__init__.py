"""Language-bias audit: how Indo-European is a face-video dataset?

The paper's measurement (VQTalker, Tables 5-6 and Figure 5), repeatable on any dataset:

1. **Items** (``inputs``). A source is a ``catalog.duckdb`` from ``talkbench data build`` (its
   accepted clips), any folder of audio/video files (searched recursively), or a list of
   ``Clip`` records (the sample corpus). Known languages (a catalog's ``expected_language``, the
   parent folder's name with ``labels_from_folders``, a Clip's ``language``) are *labels*: they
   never replace language ID, they are compared with it.
2. **Language** (``lid``). The catalog's language tags are reused; language ID
   (``talkbench.datasets.language``) runs only where a tag is missing, and its results are
   cached (SQLite, keyed by path, size, mtime, engine, model and the LID settings), so a second
   run does no language ID at all.
3. **Numbers** (``compute``). Counts, hours and shares by language and by family
   (``families.csv``); the Indo-European share by clips and by hours with a seeded percentile
   bootstrap 95% interval (clips resampled with replacement, the same resamples for both);
   no-speech clips and clips whose top language probability is under ``threshold`` are counted
   and listed, never dropped (shares are over clips with a language; the share over confident
   clips only is given beside it); the paper's figure when the dataset is one it measured; with
   labels, the misses of language ID and the label-based Indo-European share; with a catalog's
   emotion labels (MEAD), clips and hours per emotion and per intensity.
4. **Report** (``model``): one typed ``AuditReport`` that every format is rendered from, and
   that ``report.json`` holds (``to_json``/``from_json``; docs/datasets/audit.md).
5. **Reports** (``render``, ``figures``). ``report.md``, a self-contained ``report.html``
   (figures embedded as base64 PNG), ``report.json``, ``clips.csv``, ``language_shares.csv``,
   ``family_shares.csv``, ``low_confidence.csv`` (low-confidence clips are reported apart, with
   their share of each family, in every format; the report names the language-ID model and its
   sha256) and ``figures/languages.png`` (the paper's Figure 5 style, Indo-European bars
   marked) and ``figures/families.png``. ``compare`` (``run``) puts several audits side by side
   in Table 6 layout.
"""

from talkbench.datasets.audit.compute import (DEFAULT_BOOTSTRAP, DEFAULT_SEED, DEFAULT_THRESHOLD, bootstrap_shares,
                                              compare_row, emotion_shares, intensity_shares, label_stats,
                                              match_paper, paper_shares, summarise)
from talkbench.datasets.audit.figures import figure_families, figure_languages
from talkbench.datasets.audit.inputs import (CATALOG_NAME, MEDIA_SUFFIXES, is_catalog, items_from_catalog,
                                             items_from_clips, items_from_folder)
from talkbench.datasets.audit.lid import lid_model, resolve_languages
from talkbench.datasets.audit.lid_cache import LidCache, default_cache_path, lid_settings
from talkbench.datasets.audit.model import (AuditError, AuditItem, AuditReport, AuditResult, CompareResult,
                                            CompareRow, LanguageSources, PaperRow, Summary)
from talkbench.datasets.audit.render import (COMPARE_HEAD, LIST_LIMIT, compare_table, render_html, render_json,
                                             render_markdown, sections, write_reports)
from talkbench.datasets.audit.run import audit, audit_sample_corpus, compare, load_report
from talkbench.datasets.audit.text import fmt_ci, fmt_hours, fmt_pct, low_confidence_by_family, model_line

__all__ = [
    "AuditError", "AuditItem", "AuditReport", "AuditResult", "CATALOG_NAME", "COMPARE_HEAD", "CompareResult",
    "CompareRow", "DEFAULT_BOOTSTRAP", "DEFAULT_SEED", "DEFAULT_THRESHOLD", "LIST_LIMIT", "LanguageSources",
    "LidCache", "MEDIA_SUFFIXES", "PaperRow", "Summary", "audit", "audit_sample_corpus", "bootstrap_shares",
    "compare", "compare_row", "compare_table", "default_cache_path", "emotion_shares", "figure_families",
    "figure_languages", "fmt_ci", "fmt_hours", "fmt_pct", "intensity_shares", "is_catalog", "items_from_catalog",
    "items_from_clips", "items_from_folder", "label_stats", "lid_model", "lid_settings", "load_report",
    "low_confidence_by_family", "match_paper", "model_line", "paper_shares", "render_html", "render_json",
    "render_markdown", "resolve_languages", "sections", "summarise", "write_reports",
]
