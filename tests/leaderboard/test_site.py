"""The static site: self-contained, loads in headless Chromium without console errors, and a
click on a column header re-sorts the table."""

from __future__ import annotations

import html
import re

from talkbench.leaderboard.site import build_site


def test_site_is_self_contained(measured_store, tmp_path):
    index = build_site(measured_store, tmp_path / "site")
    pages = [index, tmp_path / "site" / "submit.html", *sorted((tmp_path / "site" / "methods").glob("*.html"))]
    assert len(pages) > 10
    for page in pages:
        text = page.read_text()
        assert not re.search(r'(src|href)="(https?:)?//', text), page  # no CDN, nothing fetched
        assert "<script src" not in text and "<link" not in text
    gt = html.unescape((tmp_path / "site" / "methods" / "ground-truth.html").read_text())
    assert "Protocol record" in gt and '"metric_versions"' in gt and "de_001" in gt
    assert "<svg" in index.read_text()  # the per-language chart


def test_site_in_headless_chromium(measured_store, tmp_path):
    try:
        from tests.chromium import open_page
    except ImportError:  # tests/ on sys.path instead of the repository root
        from chromium import open_page

    index = build_site(measured_store, tmp_path / "site")
    with open_page(index) as page:
        assert page.console_errors == []
        assert page.evaluate("document.querySelectorAll('table.sortable').length") >= 2
        methods = "Array.from(document.querySelectorAll('#table-0 tbody tr')).map(r => r.cells[1].textContent)"
        before = page.evaluate(methods)
        assert before[0] == "ground-truth"
        # the SSIM non-IE column of the measured board
        col = page.evaluate("Array.from(document.querySelectorAll('#table-0 thead th'))"
                            ".findIndex(th => th.textContent.startsWith('SSIM non-IE'))")
        assert col > 0
        page.evaluate(f"document.querySelectorAll('#table-0 thead th')[{col}].click()")
        ascending = page.evaluate(methods)
        values = page.evaluate(f"Array.from(document.querySelectorAll('#table-0 tbody tr'))"
                               f".map(r => parseFloat(r.cells[{col}].getAttribute('data-v')))")
        assert values == sorted(values) and ascending[0] == "static-source" and ascending[-1] == "ground-truth"
        assert page.evaluate(f"document.querySelectorAll('#table-0 thead th')[{col}].getAttribute('aria-sort')") == "ascending"
        page.evaluate(f"document.querySelectorAll('#table-0 thead th')[{col}].click()")
        assert page.evaluate(methods) == list(reversed(ascending))
        shot = page.screenshot(tmp_path / "leaderboard.png")
        assert shot.stat().st_size > 10_000
        page.goto(tmp_path / "site" / "methods" / "h264.html")
        assert page.console_errors == []
        assert "Protocol record" in page.evaluate("document.body.innerText")


def test_site_shows_intervals_ties_and_the_legend(sample_runs, tmp_path):
    from talkbench.leaderboard.ranking import leaderboard

    index = build_site(sample_runs.store, tmp_path / "site").read_text()
    [board] = leaderboard(sample_runs.store)
    a = next(r for r in board.rows if r.method == "A")
    low, high = a.interval("non_indo_european", "ssim")
    table = index[index.index('id="table-0"'):]
    rank_cells = re.findall(r'<tr><td class="l" data-v="(\d*)">([^<]*)</td>', table)
    assert rank_cells[:3] == [("", "–"), ("1", "1="), ("1", "1=")]  # the reference, then A and B tied
    assert f'<span class="ci">[{low:.3f}, {high:.3f}]</span>' in index
    assert "bootstrap intervals over clips of methods ranked next to each other overlap" in html.unescape(index)
    assert "≈+0.0" in html.unescape(table)  # D's gap is not significant
