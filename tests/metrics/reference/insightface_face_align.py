"""The reference ArcFace alignment and preprocessing, transcribed from InsightFace's pip package
(insightface==0.7.3, the version FaceAnalysis/buffalo_l users run; repository
deepinsight/insightface):

- ``estimate_norm`` / ``norm_crop``: python-package/insightface/utils/face_align.py, verbatim
  (the unused ``mode`` argument kept, and the size branches for 128-multiples).
- ``get_feat`` and ``input_normalisation``: python-package/insightface/model_zoo/arcface_onnx.py,
  ``ArcFaceONNX.get_feat`` and the mean/std choice in ``ArcFaceONNX.__init__``, as functions of
  a session instead of methods.

InsightFace reads images with cv2 (BGR): ``norm_crop`` warps the BGR image and ``get_feat``'s
``swapRB=True`` hands the network RGB.
"""

import cv2
import numpy as np
from skimage import transform as trans

arcface_dst = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
     [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32)

def estimate_norm(lmk, image_size=112,mode='arcface'):
    assert lmk.shape == (5, 2)
    assert image_size%112==0 or image_size%128==0
    if image_size%112==0:
        ratio = float(image_size)/112.0
        diff_x = 0
    else:
        ratio = float(image_size)/128.0
        diff_x = 8.0*ratio
    dst = arcface_dst * ratio
    dst[:,0] += diff_x
    tform = trans.SimilarityTransform()
    tform.estimate(lmk, dst)
    M = tform.params[0:2, :]
    return M

def norm_crop(img, landmark, image_size=112, mode='arcface'):
    M = estimate_norm(landmark, image_size, mode)
    warped = cv2.warpAffine(img, M, (image_size, image_size), borderValue=0.0)
    return warped


# ArcFaceONNX.__init__ (the part that picks the input normalisation)
def input_normalisation(model):
    find_sub = False
    find_mul = False
    graph = model.graph
    for nid, node in enumerate(graph.node[:8]):
        if node.name.startswith('Sub') or node.name.startswith('_minus'):
            find_sub = True
        if node.name.startswith('Mul') or node.name.startswith('_mul'):
            find_mul = True
    if find_sub and find_mul:
        #mxnet arcface model
        input_mean = 0.0
        input_std = 1.0
    else:
        input_mean = 127.5
        input_std = 127.5
    return input_mean, input_std


# ArcFaceONNX.get_feat, with the attributes __init__ sets passed in
def get_feat(session, input_mean, input_std, imgs):
    if not isinstance(imgs, list):
        imgs = [imgs]
    input_cfg = session.get_inputs()[0]
    input_size = tuple(input_cfg.shape[2:4][::-1])
    output_names = [out.name for out in session.get_outputs()]

    blob = cv2.dnn.blobFromImages(imgs, 1.0 / input_std, input_size,
                                  (input_mean, input_mean, input_mean), swapRB=True)
    net_out = session.run(output_names, {input_cfg.name: blob})[0]
    return net_out
