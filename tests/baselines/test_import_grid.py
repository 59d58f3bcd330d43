"""import-grid on grids built from the sample corpus: each panel comes back exactly as the grid's
decoded crop (lossless write), in the order of the names, with the grid's audio; inexact grids are
refused; blank and duplicated panels are reported."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from talkbench import media
from talkbench.baselines.external.import_grid import GridError, check_grid, parse_layout, split_grid
from talkbench.cli import app

PANEL = 256
IDS = ("tr_001", "en_001", "de_001")  # Turkish, English, German; 86-123 frames


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


@pytest.fixture(scope="module")
def panels(sample_clips):
    """The known panels: each clip decoded at 256x256, cut to a common length. The corpus has two
    portraits, so the third panel (the same photo as the first) is mirrored to tell them apart."""
    by_id = {c.id: c for c in sample_clips}
    stacks = [media.read_frames(by_id[i].video, size=PANEL) for i in IDS]
    stacks[2] = np.ascontiguousarray(stacks[2][:, :, ::-1])
    n = min(len(s) for s in stacks)
    return [s[:n] for s in stacks], media.read_audio(by_id[IDS[0]].video)


@pytest.fixture(scope="module")
def grid_3x1(panels, tmp_path_factory):
    frames, audio = panels
    path = tmp_path_factory.mktemp("grids") / "comparison.mp4"
    rows = (np.concatenate([f[t] for f in frames], axis=1) for t in range(len(frames[0])))
    media.write_video(path, rows, fps=25, audio=audio, crf=10)
    return path


def test_3x1_panels_come_back_in_order(grid_3x1, panels, tmp_path):
    frames, audio = panels
    result = split_grid(grid_3x1, tmp_path / "out", "3x1", PANEL, ["SadTalker", "EAT", "PD-FGC"])
    assert [p.name for p in result.panels] == ["SadTalker", "EAT", "PD-FGC"]
    assert [(p.row, p.col) for p in result.panels] == [(0, 0), (0, 1), (0, 2)]
    assert not result.warnings and result.codec == media.LOSSLESS_CODEC
    n = len(frames[0])
    grid = media.read_frames(grid_3x1, fps=None)
    for k, name in enumerate(["SadTalker", "EAT", "PD-FGC"]):
        out = tmp_path / "out" / f"{name}.mp4"
        info = media.probe(out)
        assert (info.width, info.height) == (PANEL, PANEL) and info.fps == pytest.approx(25)
        got = media.read_frames(out, fps=None)
        assert len(got) == n
        # exactly the grid's decoded pixels: the panel write adds no codec loss
        assert np.array_equal(got, grid[:, :, k * PANEL:(k + 1) * PANEL])
        # the grid itself is lossy (crf 10): high PSNR to its own source panel ...
        own = np.mean([psnr(got[t], frames[k][t]) for t in range(0, n, 10)])
        assert own > 32, (name, own)
        # ... and clearly not any other panel
        for j in range(3):
            if j != k:
                assert np.mean([psnr(got[t], frames[j][t]) for t in range(0, n, 10)]) < own - 12
        # the grid's audio is in every panel
        a = media.read_audio(out)
        m = min(len(a), len(audio))
        assert abs(len(a) - len(audio)) < 1600 and np.corrcoef(a[:m], audio[:m])[0, 1] > 0.95


def test_2x2_skip_blank_and_duplicate_panels(panels, tmp_path):
    frames, audio = panels
    n = len(frames[0])
    black = np.zeros_like(frames[0])
    tiles = [frames[0], frames[1], black, frames[0]]  # A | (skipped) / blank | copy of A
    grid = tmp_path / "grid2x2.mp4"
    media.write_video(grid, (np.concatenate([np.concatenate([tiles[0][t], tiles[1][t]], 1),
                                             np.concatenate([tiles[2][t], tiles[3][t]], 1)], 0) for t in range(n)),
                      fps=25, audio=None)
    result = split_grid(grid, tmp_path / "p", "2x2", PANEL, ["A", "-", "C", "D"])
    decoded = media.read_frames(grid, fps=None)
    assert np.array_equal(media.read_frames(tmp_path / "p" / "D.mp4", fps=None), decoded[:, PANEL:, PANEL:])
    by_name = {p.name: p for p in result.panels}
    assert by_name["-"].path is None and not (tmp_path / "p" / "-.mp4").exists()
    assert sorted(f.name for f in (tmp_path / "p").iterdir()) == ["A.mp4", "C.mp4", "D.mp4"]
    assert by_name["C"].blank and not by_name["A"].blank
    assert "A" in by_name["D"].identical_to and "D" in by_name["A"].identical_to
    text = " ".join(result.warnings)
    assert "(C, row 1 col 0) is blank" in text and "(D) looks identical to A" in text and "no audio" in text


def test_inexact_grids_and_bad_names_are_refused(grid_3x1, tmp_path):
    check_grid(768, 256, 3, 1, 256)
    with pytest.raises(GridError, match="4 px left over horizontally"):
        check_grid(772, 256, 3, 1, 256)
    with pytest.raises(GridError, match="pass --panel 200"):
        check_grid(600, 200, 3, 1, 256)
    with pytest.raises(GridError, match="8 px missing vertically"):
        check_grid(768, 248, 3, 1, 256)
    with pytest.raises(GridError, match="not an exact 3x1 grid"):
        split_grid(grid_3x1, tmp_path / "x", "3x1", 250, ["a", "b", "c"])
    with pytest.raises(GridError, match="3 panels .* but 2 names"):
        split_grid(grid_3x1, tmp_path / "x", "3x1", PANEL, ["a", "b"])
    with pytest.raises(GridError, match="given twice"):
        split_grid(grid_3x1, tmp_path / "x", "3x1", PANEL, ["a", "a", "b"])
    with pytest.raises(GridError, match="COLSxROWS"):
        parse_layout("3by1")
    assert parse_layout("4x2") == (4, 2)


def test_cli_import_grid_json(grid_3x1, tmp_path):
    result = CliRunner().invoke(app, ["baselines", "import-grid", str(grid_3x1), "--layout", "3x1",
                                      "--panel", "256", "--names", "A,-,C", "--out", str(tmp_path / "o"), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [p["name"] for p in data["panels"]] == ["A", "-", "C"]
    assert data["panels"][1]["path"] is None and data["has_audio"] is True
    assert data["codec"].startswith("libx264rgb qp=0")
    assert (tmp_path / "o" / "A.mp4").exists() and (tmp_path / "o" / "C.mp4").exists()
