"""face.crop: the square a clip is cut to, from detected face boxes or a manifest's box,
always even-sided and inside the frame. Values worked out by hand from the rules."""

from __future__ import annotations

import numpy as np

from talkbench.face.crop import (CROP_EXPAND, CROP_SHIFT_UP, detected_crop, face_sizes, manifest_crop, scale_box,
                                 square_crop)


def test_square_crop_is_even_centred_and_clamped():
    assert square_crop(100, 100, 51, 640, 480) == (75, 75, 125, 125)  # side 51 -> 50
    assert square_crop(10, 470, 100, 640, 480) == (0, 380, 100, 480)  # pushed back inside at a corner
    assert square_crop(320, 240, 1000, 640, 481) == (80, 0, 560, 480)  # no larger than the frame, even


def test_manifest_boxes_are_scaled_to_the_video():
    # HDTF: only the height of the measured frame is known (width 0): scale uniformly
    assert scale_box((557, 0, 1035, 478), (0, 720), 1920, 1080) == (835.5, 0.0, 1552.5, 717.0)
    assert manifest_crop((557, 0, 1035, 478), (0, 720), 1920, 1080) == (836, 0, 1552, 716)
    # VFHQ / VoxCeleb csv: a full reference frame
    assert manifest_crop((100, 50, 300, 250), (1280, 720), 640, 360) == (50, 25, 150, 125)
    # no reference frame: the video's own pixels; a face box (VoxCeleb txt) is expanded
    assert scale_box((1, 2, 3, 4), None, 640, 480) == (1, 2, 3, 4)
    assert manifest_crop((200, 100, 300, 200), None, 640, 480, expand=2.0) == (150, 50, 350, 250)


def test_detected_crop_covers_the_motion_and_sits_above_the_face():
    assert (CROP_EXPAND, CROP_SHIFT_UP) == (2.0, 0.1)
    boxes = np.array([[100, 100, 200, 200], [110, 100, 210, 200]], dtype=float)
    assert face_sizes(boxes).tolist() == [100.0, 100.0]
    assert face_sizes(np.array([[0, 0, 10, 20]])).tolist() == [20.0]
    # side 2 x 100 + 10 of motion; centre (155, 150) moved up by 0.1 x 100
    assert detected_crop(boxes, 640, 480) == (50, 35, 260, 245)
    assert detected_crop(boxes, 640, 480, expand=1.0, shift_up=0.0) == (100, 95, 210, 205)
