"""VoxCeleb, from either of its two common manifests:

- ``vox-metadata.csv`` (AliaksandrSiarohin/video-preprocessing):
  ``video_id,start,end,bbox,fps,width,height,partition,person_id`` with ``start``/``end`` in
  frames at ``fps`` and ``bbox`` = ``left-top-right-bottom`` in a ``width``x``height`` frame
  (the crop that repository cuts; used as the final crop window). The published file has 308
  rows repeated verbatim; ``load_voxceleb`` keeps the first of each, and gives a suffix
  ``#2``... to rows that share a time range but differ in bbox.
- the official per-segment txt files (``id*/video_id/00001.txt``): header lines
  ``Identity : id..``, ``Reference : <youtube id>``, ``Offset``, ``FV Conf``, ``ASD Conf``,
  then a ``FRAME X Y W H`` table at 25 fps. VoxCeleb1 gives pixels, VoxCeleb2 fractions of
  the frame; the crop is the union of the face boxes, expanded like a detected face.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from talkbench.datasets.sources.spec import ClipSpec, ManifestError, Source, read_lines

YOUTUBE = "https://www.youtube.com/watch?v={}"
VOX_COLUMNS = ["video_id", "start", "end", "bbox", "fps", "width", "height", "partition", "person_id"]
NORMALISED_FRAME = 10_000  # fractional boxes are stored in a 10000x10000 reference frame


@dataclass(frozen=True)
class VoxRow:
    video_id: str
    start: int
    end: int
    bbox: tuple[int, int, int, int]
    fps: float
    width: int
    height: int
    partition: str
    person_id: str


def parse_vox_metadata(path: Path) -> list[VoxRow]:
    """Every data row of ``vox-metadata.csv``, duplicates included, in file order."""
    rows = []
    try:
        fh = open(path, newline="", encoding="utf-8-sig")
    except FileNotFoundError:
        raise ManifestError(path, "file not found") from None
    with fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or [h.strip() for h in header] != VOX_COLUMNS:
            raise ManifestError(path, f"header must be {','.join(VOX_COLUMNS)}, got {header}", 1)
        for n, rec in enumerate(reader, 2):
            if not rec or not "".join(rec).strip():
                continue
            if len(rec) != len(VOX_COLUMNS):
                raise ManifestError(path, f"expected {len(VOX_COLUMNS)} fields, got {len(rec)}", n)
            try:
                bbox = tuple(int(v) for v in rec[3].split("-"))
                if len(bbox) != 4:
                    raise ValueError(rec[3])
                rows.append(
                    VoxRow(rec[0], int(rec[1]), int(rec[2]), bbox, float(rec[4]), int(rec[5]), int(rec[6]), rec[7], rec[8])
                )
            except ValueError as exc:
                raise ManifestError(path, f"bad value ({exc})", n) from None
    return rows


def specs_from_metadata(rows: list[VoxRow]) -> list[ClipSpec]:
    seen: dict[tuple, int] = {}
    exact: set[VoxRow] = set()
    specs = []
    for r in rows:
        if r in exact:
            continue
        exact.add(r)
        base = f"{r.person_id}#{r.video_id}#{r.start:06d}#{r.end:06d}"
        k = seen.get(base, 0) + 1
        seen[base] = k
        specs.append(
            ClipSpec(
                clip_id=base if k == 1 else f"{base}#{k}",
                dataset="voxceleb",
                source=YOUTUBE.format(r.video_id),
                start=r.start / r.fps,
                end=r.end / r.fps,
                crop=r.bbox,
                crop_frame=(r.width, r.height),
                split=r.partition,
                person=r.person_id,
                meta={"fps": r.fps},
            )
        )
    return specs


def parse_segment_txt(path: Path) -> ClipSpec:
    header: dict[str, str] = {}
    boxes: list[tuple[int, float, float, float, float]] = []
    in_table = False
    for n, line in read_lines(path):
        if not in_table:
            if line.split()[0].upper() == "FRAME":
                in_table = True
                continue
            key, sep, value = line.partition(":")
            if not sep:
                raise ManifestError(path, f"expected 'Key : value' header line, got {line!r}", n)
            header[key.strip()] = value.strip()
            continue
        parts = line.split()
        try:
            boxes.append((int(parts[0]), *(float(v) for v in parts[1:5])))
        except (ValueError, TypeError):
            raise ManifestError(path, f"expected 'FRAME X Y W H', got {line!r}", n) from None
    if "Reference" not in header or "Identity" not in header:
        raise ManifestError(path, "missing 'Identity' or 'Reference' header line")
    if not boxes:
        raise ManifestError(path, "no FRAME X Y W H rows")
    normalised = all(max(b[1:]) <= 1.0 for b in boxes)
    scale = NORMALISED_FRAME if normalised else 1
    x0 = min(b[1] for b in boxes) * scale
    y0 = min(b[2] for b in boxes) * scale
    x1 = max(b[1] + b[3] for b in boxes) * scale
    y1 = max(b[2] + b[4] for b in boxes) * scale
    first, last = boxes[0][0], boxes[-1][0]
    ident, ref = header["Identity"], header["Reference"]
    return ClipSpec(
        clip_id=f"{ident}#{ref}#{path.stem}",
        dataset="voxceleb",
        source=YOUTUBE.format(ref),
        start=first / 25.0,
        end=(last + 1) / 25.0,
        crop=(round(x0), round(y0), round(x1), round(y1)),
        crop_frame=(NORMALISED_FRAME, NORMALISED_FRAME) if normalised else None,
        person=ident,
        meta={
            "crop_is_face": True,
            "offset": header.get("Offset"),
            "fv_conf": header.get("FV Conf", "").split()[0] if header.get("FV Conf") else None,
            "asd_conf": header.get("ASD Conf"),
            "frames": len(boxes),
        },
    )


def load_voxceleb(path: Path) -> list[ClipSpec]:
    """Specs from ``vox-metadata.csv`` or from a folder (or one file) of per-segment txt files."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.rglob("*.txt"))
        if not files:
            raise ManifestError(path, "no per-segment *.txt files under this folder")
        return [parse_segment_txt(f) for f in files]
    if path.suffix.lower() == ".txt":
        return [parse_segment_txt(path)]
    return specs_from_metadata(parse_vox_metadata(path))


SOURCE = Source("voxceleb", load_voxceleb)
