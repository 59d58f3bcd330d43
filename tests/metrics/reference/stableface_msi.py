"""The MSI script published with StableFace (Ling et al. 2023, arXiv 2208.13717), transcribed.

Source: the file defining ``normalize_landmarks``, ``get_accelerations``, ``get_period_msi`` and
``get_MSI_func`` (code index id 44482366081; the index does not name its repository). The
functions below keep its loops and defaults (scale 0.25, bias 0.5, period 12); the only change
is the landmark layout: the script's 669-point "moai" indices (mouth corners 389 / 227, 17 lip
points) become the 68-point mouth corners 48 / 54 and mouth points 48–67.
"""

import numpy as np

DLIB_MOUTH = list(range(48, 68))


def normalize_landmarks(landmarks, point_idx1=48, point_idx2=54, scale=0.25):
    dist = np.linalg.norm(landmarks[:10, point_idx1] - landmarks[:10, point_idx2], axis=1).mean()
    ratio = dist / 256
    return landmarks * scale / ratio


def get_accelerations(landmarks, idx_stamps, ldmk_idxs):
    lmks_accs = {}
    for ldmk_id in ldmk_idxs:
        x = landmarks[:, ldmk_id, 0]
        y = landmarks[:, ldmk_id, 1]
        v_x = x[1:] - x[:-1]
        v_y = y[1:] - y[:-1]
        accs = []
        for i in range(len(idx_stamps) - 1):
            st, ed = int(idx_stamps[i]), int(idx_stamps[i + 1])
            accs.append([v_x[ed] - v_x[st], v_y[ed] - v_y[st]])
        lmks_accs[ldmk_id] = np.vstack(accs)
    return lmks_accs


def get_period_msi(acces, period=12, inverse=True, bias=0.5):
    a = np.vstack([acces[lid][:, 0] for lid in acces])  # (M, N) x accelerations
    b = np.vstack([acces[lid][:, 1] for lid in acces])  # (M, N) y accelerations
    msi_x, msi_y = [], []
    for i in range(0, a.shape[1], period // 2):
        if inverse:
            msi_x.append((1 / (np.var(a[:, i : i + period], axis=1) + bias)).mean())
            msi_y.append((1 / (np.var(b[:, i : i + period], axis=1) + bias)).mean())
        else:
            msi_x.append(np.var(a[:, i : i + period], axis=1).mean())
            msi_y.append(np.var(b[:, i : i + period], axis=1).mean())
    return ((np.array(msi_x) + np.array(msi_y)) / 2).mean()


def get_MSI_func(n_frame_landmarks, ldmk_idxs=DLIB_MOUTH, left_mouth_point=48, right_mouth_point=54,
                 scale=0.25, bias=0.5, period=12):  # fmt: skip
    """(variance form, MSI) of a (T, K, 2) landmark sequence, as the script returns them."""
    landmarks = normalize_landmarks(n_frame_landmarks, left_mouth_point, right_mouth_point, scale)
    accelerations = get_accelerations(landmarks, np.arange(len(landmarks) - 1), ldmk_idxs=ldmk_idxs)
    var_axy = get_period_msi(accelerations, period=period, inverse=False, bias=bias)
    var_axy_i = get_period_msi(accelerations, period=period, inverse=True, bias=bias)
    return var_axy, var_axy_i
