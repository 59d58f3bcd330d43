"""HDTF, from the official lists in MRzzm/HDTF ``HDTF_dataset/`` (one set per subset prefix,
RD / WDA / WRA):

- ``{P}_video_url.txt``      ``name url``
- ``{P}_annotion_time.txt``  ``name.mp4 mm:ss-mm:ss [mm:ss-mm:ss ...]``; range i is clip i
- ``{P}_crop_wh.txt``        ``name_i.mp4 min_width width min_height height`` (the README's
                             words): the crop window is x in [min_width, min_width+width),
                             y in [min_height, min_height+height) of the source frame
- ``{P}_crop_ratio.txt``     ``name_i.mp4 ratio`` (kept in the clip's meta)
- ``{P}_resolution.txt``     ``name.mp4 height`` of the video the crops were measured on
                             (0 in a few lines: unknown)

Quirks of the published files handled here: a UTF-8 BOM (WDA_video_url.txt), missing final
newlines, trailing spaces, a URL without annotation (RD Radio24), clips without a crop entry
(detected instead), a resolution of 0 (KevinMcCarthy1) and crops taller than the listed
resolution (MaggieHassan, MazieHirono1, PeterKing): those crops are used in the pixels of the
download; the others are scaled by downloaded height / listed height. Clip ids are
``{P}_{name}_{i:03d}``, as in the released HDTF clips.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from talkbench.datasets.sources.spec import ClipSpec, ManifestError, Source, read_lines

RANGE = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")


@dataclass
class HdtfSubset:
    prefix: str
    urls: dict[str, str] = field(default_factory=dict)  # video name -> url
    ranges: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # video -> ranges
    crops: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)  # clip -> x0,y0,x1,y1
    ratios: dict[str, float] = field(default_factory=dict)  # clip name -> crop ratio
    resolution: dict[str, int] = field(default_factory=dict)  # video -> height (0 = unknown)

    @property
    def clip_count(self) -> int:
        return sum(len(r) for r in self.ranges.values())


def _seconds(m: str, s: str) -> float:
    return int(m) * 60 + int(s)


def _strip_mp4(name: str) -> str:
    return name[:-4] if name.lower().endswith(".mp4") else name


def _name_values(path: Path, conv, what: str) -> dict:
    """``name.mp4 value`` lines (an optional file: empty when missing)."""
    out = {}
    if path.exists():
        for n, line in read_lines(path):
            parts = line.split()
            try:
                out[_strip_mp4(parts[0])] = conv(parts[1])
            except (IndexError, ValueError):
                raise ManifestError(path, f"expected 'name {what}', got {line!r}", n) from None
    return out


def parse_subset(folder: Path, prefix: str) -> HdtfSubset:
    sub = HdtfSubset(prefix)
    path = folder / f"{prefix}_video_url.txt"
    for n, line in read_lines(path):
        parts = line.split()
        if len(parts) != 2:
            raise ManifestError(path, f"expected 'name url', got {line!r}", n)
        sub.urls[parts[0]] = parts[1]

    path = folder / f"{prefix}_annotion_time.txt"
    for n, line in read_lines(path):
        name, *ranges = line.split()
        if not ranges:
            raise ManifestError(path, f"{name} has no time range", n)
        parsed = []
        for r in ranges:
            m = RANGE.match(r)
            if not m:
                raise ManifestError(path, f"bad time range {r!r} (expected mm:ss-mm:ss)", n)
            start, end = _seconds(*m.group(1, 2)), _seconds(*m.group(3, 4))
            if end <= start:
                raise ManifestError(path, f"range {r!r} ends before it starts", n)
            parsed.append((float(start), float(end)))
        sub.ranges[_strip_mp4(name)] = parsed

    path = folder / f"{prefix}_crop_wh.txt"
    if path.exists():
        for n, line in read_lines(path):
            parts = line.split()
            if len(parts) != 5:
                raise ManifestError(path, f"expected 'name x w y h', got {line!r}", n)
            try:
                x, w, y, h = (int(v) for v in parts[1:])
            except ValueError:
                raise ManifestError(path, f"non-integer crop in {line!r}", n) from None
            sub.crops[_strip_mp4(parts[0])] = (x, y, x + w, y + h)

    sub.ratios = _name_values(folder / f"{prefix}_crop_ratio.txt", float, "ratio")
    sub.resolution = _name_values(folder / f"{prefix}_resolution.txt", int, "height")
    return sub


def parse_hdtf(folder: Path) -> dict[str, HdtfSubset]:
    """Every subset whose ``{P}_video_url.txt`` and ``{P}_annotion_time.txt`` are in ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ManifestError(folder, "HDTF manifest folder not found (expected *_video_url.txt files)")
    prefixes = sorted(p.name[: -len("_video_url.txt")] for p in folder.glob("*_video_url.txt"))
    if not prefixes:
        raise ManifestError(folder, "no *_video_url.txt file: not an HDTF manifest folder")
    return {p: parse_subset(folder, p) for p in prefixes}


def load_hdtf(folder: Path, subsets: list[str] | None = None) -> list[ClipSpec]:
    folder = Path(folder)
    specs = []
    for prefix, sub in parse_hdtf(folder).items():
        if subsets and prefix not in subsets:
            continue
        for video, ranges in sub.ranges.items():
            url = sub.urls.get(video)
            if url is None:
                raise ManifestError(folder / f"{prefix}_video_url.txt", f"no URL for annotated video {video}")
            height = sub.resolution.get(video) or 0
            for i, (start, end) in enumerate(ranges):
                key = f"{video}_{i}"
                crop = sub.crops.get(key)
                # width 0: scale crops by height only. A crop taller than the listed resolution
                # (3 published lines) was measured on another download: use it unscaled.
                frame = (0, height) if height and crop and crop[3] <= height else None
                specs.append(
                    ClipSpec(
                        clip_id=f"{prefix}_{video}_{i:03d}",
                        dataset="hdtf",
                        source=url,
                        start=start,
                        end=end,
                        crop=crop,
                        crop_frame=frame,
                        language="en",
                        split=prefix,
                        person=video,
                        meta={"crop_ratio": sub.ratios.get(key), "resolution": height or None},
                    )
                )
    return specs


SOURCE = Source("hdtf", load_hdtf)
