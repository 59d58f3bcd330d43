"""VFHQ, from its per-clip meta files named ``Clip+{ytid}+P{pid}+C{idx}+F{start}-{end}.txt``
(the YouTube id may itself contain ``+``-free characters such as ``-`` and ``_``). Each file
has ``Key: value`` lines, of which ``H``, ``W``, ``FPS`` and ``CROP x0 y0 x1 y1`` are used;
lines after them (per-frame landmarks) are ignored. ``F{start}-{end}`` are frame indices at
``FPS``; the CROP box is in an ``W``x``H`` frame and is the final crop window."""

from __future__ import annotations

import re
from pathlib import Path

from talkbench.datasets.sources.spec import ClipSpec, ManifestError, Source, read_lines

NAME = re.compile(r"^Clip\+(?P<yt>.+)\+P(?P<pid>\d+)\+C(?P<idx>\d+)\+F(?P<start>\d+)-(?P<end>\d+)$")
KEY = re.compile(r"^(?P<key>[A-Za-z ]+?)\s*:\s*(?P<value>.*)$")


def parse_vfhq_meta(path: Path) -> ClipSpec:
    path = Path(path)
    m = NAME.match(path.stem)
    if not m:
        raise ManifestError(path, "name must be Clip+{ytid}+P{pid}+C{idx}+F{start}-{end}.txt")
    fields: dict[str, str] = {}
    for n, line in read_lines(path):
        km = KEY.match(line)
        if not km:
            break  # the per-frame table begins
        fields[km["key"].strip().upper()] = km["value"].strip()
    missing = [k for k in ("H", "W", "FPS", "CROP") if k not in fields]
    if missing:
        raise ManifestError(path, f"missing {', '.join(missing)} line(s)")
    try:
        height, width, fps = int(fields["H"]), int(fields["W"]), float(fields["FPS"])
        crop = tuple(int(float(v)) for v in fields["CROP"].split())
    except ValueError as exc:
        raise ManifestError(path, f"bad number ({exc})") from None
    if len(crop) != 4 or crop[2] <= crop[0] or crop[3] <= crop[1]:
        raise ManifestError(path, f"CROP must be x0 y0 x1 y1 with x1>x0, y1>y0, got {fields['CROP']!r}")
    start, end = int(m["start"]), int(m["end"])
    if end <= start:
        raise ManifestError(path, f"frame range F{start}-{end} is empty")
    return ClipSpec(
        clip_id=path.stem,
        dataset="vfhq",
        source=f"https://www.youtube.com/watch?v={m['yt']}",
        start=start / fps,
        end=end / fps,
        crop=crop,  # type: ignore[arg-type]
        crop_frame=(width, height),
        person=f"{m['yt']}+P{m['pid']}",
        meta={"fps": fps, "clip_index": int(m["idx"])},
    )


def load_vfhq(path: Path) -> list[ClipSpec]:
    path = Path(path)
    if path.is_file():
        return [parse_vfhq_meta(path)]
    if not path.is_dir():
        raise ManifestError(path, "VFHQ meta folder not found")
    files = sorted(path.rglob("Clip+*.txt"))
    if not files:
        raise ManifestError(path, "no Clip+*.txt meta files under this folder")
    return [parse_vfhq_meta(f) for f in files]


SOURCE = Source("vfhq", load_vfhq)
