"""M-LMD / F-LMD as EAT's evaluation computes them, transcribed from yuangan/evaluation_eat
``code/test_lmd.py`` (``calibrate_lmk``, ``euc_dis``, ``ld`` and the averaging of ``get_lmd``),
on landmarks already detected: the script's dlib detection, its frame pairing (both clips have
the same length here) and its velocity terms (LVD) are left out.
"""

import math

import numpy as np


def calibrate_lmk(lmk):
    lmk = lmk.astype(np.float64)
    mean_x = np.mean(lmk[:, 0])
    mean_y = np.mean(lmk[:, 1])
    lmk[:, 0] = lmk[:, 0] - mean_x
    lmk[:, 1] = lmk[:, 1] - mean_y
    return lmk


def euc_dis(p1, p2):
    return math.sqrt((p1[0] - p2[0]) ** 2 + (p1[1] - p2[1]) ** 2)


def ld(lmk1, lmk2):
    lmk1, lmk2 = calibrate_lmk(lmk1), calibrate_lmk(lmk2)
    return sum(euc_dis(p1, lmk2[i]) for i, p1 in enumerate(lmk1))


def get_lmd(generated_shapes, truth_shapes):
    """(mouth LMD, face LMD) of two sequences of (68, 2) shapes, None where no face was found."""
    mouth_dis_sum, face_dis_sum, valid_num = 0.0, 0.0, 0
    for face_lmk1, face_lmk2 in zip(generated_shapes, truth_shapes):
        if face_lmk1 is None or face_lmk2 is None:
            continue
        mouth_dis_sum += ld(face_lmk1[48:68], face_lmk2[48:68])
        face_dis_sum += ld(face_lmk1, face_lmk2)
        valid_num += 1
    return mouth_dis_sum / (valid_num * 20), face_dis_sum / (valid_num * 68)
