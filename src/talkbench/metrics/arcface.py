"""ArcFace identity embeddings for CSIM: two networks behind one alignment.

Alignment, as InsightFace's ``face_align.norm_crop`` (python-package/insightface/utils/
face_align.py): the least-squares similarity transform (scikit-image ``SimilarityTransform``)
taking five facial points onto the 112×112 ``arcface_dst`` template, then ``cv2.warpAffine``
(bilinear, black border). InsightFace takes the five points from its own detector (RetinaFace /
SCRFD keypoints); here they come from the face backend's 68 landmarks: the centres of the two
eyes (36–41, 42–47), the nose tip (30) and the mouth corners (48, 54), image-left first.

Networks:

- ``ArcFace`` (identity backend ``arcface``): ``arcface_torch``'s iresnet100 in torch, RGB,
  (x / 255 − 0.5) / 0.5 as arcface_torch's inference.py; weights ``arcface-r100``.
- ``InsightFaceONNX`` (identity backend ``insightface``): the recognition model of InsightFace's
  ``buffalo_l`` pack, ``w600k_r50.onnx`` (iresnet50 trained on WebFace600K), run by onnxruntime
  with ``ArcFaceONNX.get_feat``'s preprocessing (python-package/insightface/model_zoo/
  arcface_onnx.py): ``cv2.dnn.blobFromImages`` with mean 127.5 and scale 1 / 127.5 (raw pixels for
  the mxnet-era models that normalise inside the graph), RGB; weights ``insightface-w600k-r50``.

Both weight files are InsightFace's: non-commercial research use only.
"""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import torch
from skimage.transform import SimilarityTransform
from torch import nn

from talkbench import weights
from talkbench.errors import MetricError

WEIGHTS = "arcface-r100"
INSIGHTFACE_WEIGHTS = "insightface-w600k-r50"
SIZE = 112
TEMPLATE = np.array(  # face_align.arcface_dst
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)


def five_points(landmarks68: np.ndarray) -> np.ndarray:
    lm = np.asarray(landmarks68, dtype=np.float64)
    return np.stack([lm[36:42].mean(0), lm[42:48].mean(0), lm[30], lm[48], lm[54]]).astype(np.float32)


def align(image: np.ndarray, landmarks68: np.ndarray) -> np.ndarray:
    """The 112×112 ArcFace crop of a uint8 image: ``face_align.norm_crop(image, five_points)``,
    pixel for pixel (tests/metrics/test_arcface.py holds it to insightface's code)."""
    points = five_points(landmarks68)
    if hasattr(SimilarityTransform, "from_estimate"):  # scikit-image >= 0.26: a falsy result on failure
        transform = SimilarityTransform.from_estimate(points, TEMPLATE)
        ok = bool(transform)
    else:
        transform = SimilarityTransform()
        ok = transform.estimate(points, TEMPLATE)
    if not ok or not np.all(np.isfinite(transform.params)):
        raise MetricError(f"ArcFace alignment failed: degenerate landmarks {points.round(1).tolist()}")
    return cv2.warpAffine(image, transform.params[0:2, :], (SIZE, SIZE), borderValue=0.0)


def conv3x3(inp: int, out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(inp, out, 3, stride, 1, bias=False)


class IBasicBlock(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=1e-05)
        self.conv1 = conv3x3(inplanes, planes)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-05)
        self.prelu = nn.PReLU(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-05)
        self.downsample = downsample

    def forward(self, x):
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (self.downsample(x) if self.downsample is not None else x)


class IResNet(nn.Module):
    """arcface_torch's IResNet (module names kept so its checkpoints load unchanged)."""

    def __init__(self, layers=(3, 13, 30, 3), num_features: int = 512):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-05)
        self.prelu = nn.PReLU(64)
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1])
        self.layer3 = self._make_layer(256, layers[2])
        self.layer4 = self._make_layer(512, layers[3])
        self.bn2 = nn.BatchNorm2d(512, eps=1e-05)
        self.dropout = nn.Dropout(p=0, inplace=True)
        self.fc = nn.Linear(512 * 7 * 7, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=1e-05)

    def _make_layer(self, planes: int, blocks: int) -> nn.Sequential:
        downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes, 1, 2, bias=False), nn.BatchNorm2d(planes, eps=1e-05))
        layers = [IBasicBlock(self.inplanes, planes, 2, downsample)]
        self.inplanes = planes
        layers += [IBasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(torch.flatten(self.bn2(x), 1))
        return self.features(self.fc(x))


class ArcFace:
    """iresnet100 embedder (``layers``: another arcface_torch depth, r50 = (3, 4, 14, 3));
    ``embed(image, landmarks68)`` → 512-d float32 (not normalised)."""

    def __init__(self, state_dict: dict | None = None, layers: tuple[int, ...] = (3, 13, 30, 3)):
        self.net = IResNet(layers)
        if state_dict is None:
            data = weights.read_verified(WEIGHTS)
            with weights.loading(WEIGHTS, "an arcface_torch iresnet100 state dict saved by torch.save"):
                self.net.load_state_dict(torch.load(io.BytesIO(data), map_location="cpu", weights_only=True))
        else:
            self.net.load_state_dict(state_dict)
        self.net.eval().requires_grad_(False)

    @torch.inference_mode()
    def embed_crops(self, crops: np.ndarray) -> np.ndarray:
        # NCHW-contiguous: a permuted NHWC tensor would run the network channels-last, ~20 % slower on CPU
        x = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float().contiguous()
        return self.net((x / 255 - 0.5) / 0.5).numpy()

    def embed(self, image: np.ndarray, landmarks68: np.ndarray) -> np.ndarray:
        return self.embed_crops(align(image, landmarks68)[None])[0]


def input_normalisation(model) -> tuple[float, float]:
    """(mean, std) of ``ArcFaceONNX.__init__``: a Sub and a Mul among the graph's first 8 nodes
    mark an mxnet-converted model that normalises its own input, fed raw pixels; the others
    (w600k_r50 among them) take (x − 127.5) / 127.5."""
    names = [node.name for node in model.graph.node[:8]]
    subtracts = any(name.startswith(("Sub", "_minus")) for name in names)
    multiplies = any(name.startswith(("Mul", "_mul")) for name in names)
    return (0.0, 1.0) if subtracts and multiplies else (127.5, 127.5)


class InsightFaceONNX:
    """InsightFace's ONNX recognition model (buffalo_l's w600k_r50) on onnxruntime's CPU
    provider; ``model`` is a file or the serialised model, by default the installed
    ``insightface-w600k-r50``. ``embed(image, landmarks68)`` → 512-d float32 (not normalised)."""

    def __init__(self, model: str | Path | bytes | None = None):
        if model is None:
            data = weights.read_verified(INSIGHTFACE_WEIGHTS)
            with weights.loading(INSIGHTFACE_WEIGHTS, "an ONNX ArcFace recognition model (112×112 input, one output)"):
                self._open(data)
        else:
            self._open(model)

    def _open(self, model: str | Path | bytes) -> None:
        import onnx
        import onnxruntime

        if isinstance(model, bytes):
            proto = onnx.load_model_from_string(model)
        else:
            model = str(model)
            proto = onnx.load(model, load_external_data=False)
        self.input_mean, self.input_std = input_normalisation(proto)
        self.session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
        source = self.session.get_inputs()[0]
        self.input_name = source.name
        self.input_size = tuple(source.shape[2:4][::-1])
        self.output_names = [output.name for output in self.session.get_outputs()]
        if self.input_size != (SIZE, SIZE) or len(self.output_names) != 1:
            raise MetricError(f"not an ArcFace recognition model: input {source.shape}, outputs {self.output_names}")

    def blob(self, crops: np.ndarray) -> np.ndarray:
        """get_feat's network input from RGB crops (it swaps the BGR crops it is given)."""
        images, mean = list(np.ascontiguousarray(crops)), self.input_mean
        return cv2.dnn.blobFromImages(images, 1.0 / self.input_std, self.input_size, (mean, mean, mean), swapRB=False)

    def embed_crops(self, crops: np.ndarray) -> np.ndarray:
        return self.session.run(self.output_names, {self.input_name: self.blob(crops)})[0]

    def embed(self, image: np.ndarray, landmarks68: np.ndarray) -> np.ndarray:
        return self.embed_crops(align(image, landmarks68)[None])[0]
