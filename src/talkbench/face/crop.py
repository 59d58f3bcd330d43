"""Crop geometry: from face boxes to the one fixed square a clip is cut to.

No alignment (as the paper: natural head motion stays in frame). A detected crop is centred on
the median face centre over the sampled frames, ``CROP_EXPAND`` times the largest face box
plus the span the face centre moves, shifted up by ``CROP_SHIFT_UP`` of a face so hair stays
in. A manifest crop is scaled from the frame it was measured on to the video's. Every crop is
a square with an even side, clamped to the frame. Boxes are (x0, y0, x1, y1) in pixels."""

from __future__ import annotations

import numpy as np

Box = tuple[int, int, int, int]

CROP_EXPAND = 2.0  # crop side = CROP_EXPAND x the largest detected face box (+ motion span)
CROP_SHIFT_UP = 0.1  # crop centre moves up by this fraction of the face size


def square_crop(cx: float, cy: float, side: float, width: int, height: int) -> Box:
    """The square of ``side`` (made even, shrunk to fit the frame) centred on (cx, cy) as far as
    the frame allows."""
    side = int(min(side, width, height)) // 2 * 2
    x0 = int(round(min(max(cx - side / 2, 0), width - side)))
    y0 = int(round(min(max(cy - side / 2, 0), height - side)))
    return x0, y0, x0 + side, y0 + side


def scale_box(box: tuple[float, float, float, float], frame: tuple[int, int] | None, width: int,
              height: int) -> tuple[float, float, float, float]:
    """``box`` measured in a ``frame`` = (width, height) reference frame, in the pixels of a
    ``width`` x ``height`` video. Frame width 0: only the height is known, scale uniformly
    (HDTF); no frame: the box is in the video's pixels already."""
    x0, y0, x1, y1 = box
    if not frame:
        return x0, y0, x1, y1
    ref_w, ref_h = frame
    sy = height / ref_h
    sx = width / ref_w if ref_w else sy
    return x0 * sx, y0 * sy, x1 * sx, y1 * sy


def manifest_crop(box: tuple[float, float, float, float], frame: tuple[int, int] | None, width: int, height: int,
                  expand: float | None = None) -> Box:
    """The square crop for a manifest's box: the box's longer side (times ``expand`` when the
    box is a face box rather than a crop window), centred on the box."""
    x0, y0, x1, y1 = scale_box(box, frame, width, height)
    side = max(x1 - x0, y1 - y0)
    if expand is not None:
        side *= expand
    return square_crop((x0 + x1) / 2, (y0 + y1) / 2, side, width, height)


def face_sizes(boxes: np.ndarray) -> np.ndarray:
    """The side of each (n, 4) face box: the larger of its width and height."""
    boxes = np.asarray(boxes, dtype=float)
    return np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])


def detected_crop(boxes: np.ndarray, width: int, height: int, expand: float = CROP_EXPAND,
                  shift_up: float = CROP_SHIFT_UP) -> Box:
    """One square for a clip from its (n, 4) face boxes (one per sampled frame): ``expand``
    times the largest face plus the span the face centre moves, centred on the median centre
    moved up by ``shift_up`` of the median face size."""
    boxes = np.asarray(boxes, dtype=float)
    sizes = face_sizes(boxes)
    centres = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], 1)
    span = float(np.max(centres.max(0) - centres.min(0)))
    side = expand * float(sizes.max()) + span
    cx, cy = np.median(centres, 0)
    return square_crop(cx, cy - shift_up * float(np.median(sizes)), side, width, height)
