"""The source registry: one list of sources, filled by the package from its modules, none of
which imports the package back; the files source reads every video suffix ``media`` knows."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from talkbench import media
from talkbench.datasets import sources
from talkbench.datasets.sources import REGISTRY, SOURCES, get_source, load_source
from talkbench.datasets.sources.files import load_files
from talkbench.datasets.sources.hdtf import load_hdtf
from talkbench.datasets.sources.mnte import load_mnte
from talkbench.errors import TalkbenchError


def test_one_registry_of_every_source():
    assert SOURCES == ("hdtf", "voxceleb", "vfhq", "mnte", "mead", "files")
    assert REGISTRY.names() == sorted(SOURCES)
    assert get_source("HDTF").load is load_hdtf and get_source("mnte").load is load_mnte
    assert (get_source("mnte").min_seconds, get_source("mnte").min_face_px) == (3.0, 512)
    assert all(get_source(s).min_seconds is None for s in SOURCES if s != "mnte")
    with pytest.raises(TalkbenchError, match="unknown source 'youtube'; registered: files, hdtf, mead, mnte"):
        load_source("youtube", "x")


def test_no_source_module_imports_the_package():
    """The package imports the source modules to fill its registry; a module importing the
    package back would be an import cycle."""
    folder = Path(sources.__file__).parent
    checked = 0
    for path in sorted(folder.glob("*.py")):
        if path.name == "__init__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert node.module != "talkbench.datasets.sources", f"{path.name}:{node.lineno}"
                if node.module == "talkbench.datasets":
                    assert "sources" not in {a.name for a in node.names}, f"{path.name}:{node.lineno}"
            elif isinstance(node, ast.Import):
                assert "talkbench.datasets.sources" not in {a.name for a in node.names}, f"{path.name}:{node.lineno}"
        checked += 1
    assert checked == 7  # files, hdtf, mead, mnte, spec, vfhq, voxceleb


def test_files_reads_every_video_suffix(tmp_path):
    assert {".mp4", ".m4v", ".ts", ".mpeg"} <= set(media.VIDEO_SUFFIXES)
    for name in ("a.mp4", "b.M4V", "c.ts", "d.flv", "notes.txt", "e.wav"):
        (tmp_path / name).write_bytes(b"x")
    specs = load_files(tmp_path)
    assert [s.clip_id for s in specs] == ["a", "b", "c", "d"]
    assert load_source("files", [str(tmp_path / "later.mpg")])[0].clip_id == "later"  # not there yet: still a clip
