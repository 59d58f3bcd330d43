"""SyncNet (Chung & Zisserman, "Out of time: automated lip sync in the wild", ACCV-W 2016) and
its lip-sync scores as syncnet_python computes them (github.com/joonson/syncnet_python):
``SyncNetModel.py`` (the network ``S``), ``run_pipeline.py`` ``crop_video`` (face crops) and
``SyncNetInstance.py`` ``evaluate`` + ``calc_pdist`` (the scores). Wav2Lip named the two
scores LSE-C and LSE-D (``evaluation/scores_LSE/SyncNetInstance_calc_scores.py`` returns
``conf`` and ``minval``).

For one face track of video at 25 fps with 16 kHz mono audio:

1. Face crops: per frame the box side ``s = max(w, h) / 2`` and centre ``(x, y)`` are smoothed
   over the track by a 13-frame median filter (``scipy.signal.medfilt``: zero padding at the
   track's ends); the frame is padded by ``int(s (1 + 2·0.4))`` pixels of value 110 and
   ``[y − s, y + s (1 + 0.8)) × [x − 1.4 s, x + 1.4 s)`` is cut and resized to 224×224
   (``cv2.resize``, bilinear). The network sees BGR values 0–255 (``cv2.imread``).
2. Audio: ``python_speech_features.mfcc(audio, 16000)`` with its defaults on the int16 samples
   (``scipy.io.wavfile`` of ffmpeg's ``pcm_s16le``): 13 cepstra every 10 ms, 4 per video frame.
3. ``min_length = min(frames, floor(samples / 640))``; windows ``v = 0 … min_length − 6``
   (``lastframe = min_length − 5``: syncnet_python leaves out the last whole window): the lip
   branch embeds frames ``v … v+4``, the audio branch MFCC columns ``4v … 4v+19``.
4. ``calc_pdist``: for each window, the L2 distances (``pairwise_distance``, eps 1e-6) between
   its lip embedding and the audio embeddings of windows ``v − 15 … v + 15`` (zero vectors
   beyond the ends); ``mdist`` = their mean over windows, per offset.
5. ``LSE-D = min(mdist)``, ``LSE-C = median(mdist) − min(mdist)``, AV offset ``= 15 − argmin``.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from talkbench import weights
from talkbench.errors import MetricError, WeightsError

try:  # the "metrics" extra: only LSE needs them, and the metric registry imports this module
    import cv2
    import python_speech_features
except ImportError:
    cv2 = python_speech_features = None

WEIGHTS = "syncnet-v2"
FPS = 25  # SyncNet's video rate: 4 MFCC frames (10 ms) per video frame
AUDIO_RATE = 16_000
SAMPLES_PER_FRAME = AUDIO_RATE // FPS  # 640
MFCC_PER_FRAME = 4
WINDOW = 5  # video frames per lip window
MFCC_WINDOW = WINDOW * MFCC_PER_FRAME  # 20
VSHIFT = 15  # offsets searched: -15 … +15 frames (run_syncnet.py's --vshift)
CROP_SIZE = 224
CROP_SCALE = 0.40  # run_pipeline.py's --crop_scale
PAD_VALUE = 110
SMOOTHING = 13  # median filter over box centre and size
SMOOTHING_REACH = SMOOTHING // 2
# The shortest run of face frames with a window whose crops are real: with fewer than 7 frames
# the zero-padded median filter gives every frame a box of size 0.
MIN_RUN_FRAMES = SMOOTHING_REACH + 1
EMBEDDING = 1024

weights.register_weight(
    weights.WeightSpec(
        name=WEIGHTS,
        url="http://www.robots.ox.ac.uk/~vgg/software/lipsync/data/syncnet_v2.model",
        licence="MIT (syncnet_python, Copyright (c) 2016-present Joon Son Chung)",
        description="SyncNet v2 audio-visual sync network (syncnet_python's download_model.sh)",
    )
)


def require_dependencies() -> None:
    missing = [name for name, module in (("opencv-python-headless", cv2), ("python_speech_features", python_speech_features))
               if module is None]  # fmt: skip
    if missing:
        raise MetricError(f"LSE needs {' and '.join(missing)}: pip install 'talkbench[metrics]'")


class SyncNet(nn.Module):
    """syncnet_python's ``S``, with its module names, so ``syncnet_v2.model`` loads unchanged."""

    def __init__(self, num_layers_in_fc_layers: int = EMBEDDING):
        super().__init__()
        self.netcnnaud = nn.Sequential(
            nn.Conv2d(1, 64, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1)),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=(1, 1), stride=(1, 1)),
            nn.Conv2d(64, 192, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1)),
            nn.BatchNorm2d(192),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=(3, 3), stride=(1, 2)),
            nn.Conv2d(192, 384, kernel_size=(3, 3), padding=(1, 1)),
            nn.BatchNorm2d(384),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=(3, 3), padding=(1, 1)),
            nn.BatchNorm2d(256),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=(3, 3), padding=(1, 1)),
            nn.BatchNorm2d(256),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=(3, 3), stride=(2, 2)),
            nn.Conv2d(256, 512, kernel_size=(5, 4), padding=(0, 0)),
            nn.BatchNorm2d(512),
            nn.ReLU(),
        )
        self.netfcaud = nn.Sequential(
            nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, num_layers_in_fc_layers)
        )
        self.netfclip = nn.Sequential(
            nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, num_layers_in_fc_layers)
        )
        self.netcnnlip = nn.Sequential(
            nn.Conv3d(3, 96, kernel_size=(5, 7, 7), stride=(1, 2, 2), padding=0),
            nn.BatchNorm3d(96),
            nn.ReLU(inplace=True),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),
            nn.Conv3d(96, 256, kernel_size=(1, 5, 5), stride=(1, 2, 2), padding=(0, 1, 1)),
            nn.BatchNorm3d(256),
            nn.ReLU(inplace=True),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
            nn.Conv3d(256, 256, kernel_size=(1, 3, 3), padding=(0, 1, 1)),
            nn.BatchNorm3d(256),
            nn.ReLU(inplace=True),
            nn.Conv3d(256, 256, kernel_size=(1, 3, 3), padding=(0, 1, 1)),
            nn.BatchNorm3d(256),
            nn.ReLU(inplace=True),
            nn.Conv3d(256, 256, kernel_size=(1, 3, 3), padding=(0, 1, 1)),
            nn.BatchNorm3d(256),
            nn.ReLU(inplace=True),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),
            nn.Conv3d(256, 512, kernel_size=(1, 6, 6), padding=0),
            nn.BatchNorm3d(512),
            nn.ReLU(inplace=True),
        )

    def forward_aud(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, 13, 20) MFCC windows → (N, 1024)."""
        return self.netfcaud(self.netcnnaud(x).flatten(1))

    def forward_lip(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, 5, 224, 224) BGR 0–255 windows → (N, 1024)."""
        return self.netfclip(self.netcnnlip(x).flatten(1))


def _load_state(net: SyncNet, state_dict: dict) -> None:
    missing, unexpected = net.load_state_dict(state_dict, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(f"not a SyncNet state dict (missing {missing[:3]}, unexpected {unexpected[:3]})")


def load_syncnet(state_dict: dict | None = None) -> SyncNet:
    """SyncNet with the published ``syncnet_v2.model`` (or ``state_dict``), in eval mode.

    The file is a plain state dict of ``S`` saved by ``torch.save`` (syncnet_python's
    ``loadParameters`` copies it name by name); ``weights_only`` loading reads it, legacy
    (pre-1.6) format included. Files from before PyTorch 0.4.1 lack BatchNorm's
    ``num_batches_tracked``, which inference never reads."""
    net = SyncNet()
    if state_dict is None:
        data = weights.read_verified(WEIGHTS)
        with weights.loading(WEIGHTS, "syncnet_python's SyncNet v2 state dict saved by torch.save"):
            _load_state(net, torch.load(io.BytesIO(data), map_location="cpu", weights_only=True))
    else:
        try:
            _load_state(net, state_dict)
        except ValueError as exc:
            raise WeightsError(f"{WEIGHTS}: {exc}") from None
    net.netcnnlip.to(memory_format=torch.channels_last_3d)  # oneDNN's 3-D convolutions: 1/3 less CPU
    return net.eval().requires_grad_(False)


def random_state_dict(seed: int = 0) -> dict:
    """Random SyncNet weights with non-trivial BatchNorm statistics, for equality tests and
    speed benchmarks where the published file cannot be downloaded."""
    torch.manual_seed(seed)
    net = SyncNet()
    for module in net.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return net.state_dict()


# -- audio ---------------------------------------------------------------------------------------


def to_int16(samples: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] → int16 as ffmpeg writes ``pcm_s16le`` (libswresample:
    ``av_clip_int16(lrintf(x * 32768))``, round half to even). MFCC's log energies depend on
    the scale, so SyncNet must see int16 values."""
    scaled = np.rint(np.asarray(samples, dtype=np.float32) * np.float32(32768))
    return np.clip(scaled, -32768, 32767).astype(np.int16)


def mfcc(audio: np.ndarray) -> np.ndarray:
    """(samples,) int16 at 16 kHz → (13, frames) float32, one column per 10 ms."""
    return python_speech_features.mfcc(audio, AUDIO_RATE).T.astype(np.float32)


# -- face crops ----------------------------------------------------------------------------------


def box_centres(boxes: np.ndarray) -> np.ndarray:
    """(T, ≥4) left, top, right, bottom → (T, 3) half side ``s``, centre ``x``, centre ``y``."""
    boxes = np.asarray(boxes, dtype=np.float64)
    half_side = np.maximum(boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0]) / 2
    return np.stack([half_side, (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], axis=1)


def smoothed_centre(centres: np.ndarray, i: int) -> np.ndarray:
    """``scipy.signal.medfilt(·, 13)[i]`` of each column of a whole track's ``centres``: the
    median of 13 values, zeros standing in beyond the track's ends."""
    window = centres[max(0, i - SMOOTHING_REACH) : i + SMOOTHING_REACH + 1]
    padded = np.zeros((SMOOTHING, 3))
    padded[: len(window)] = window
    return np.median(padded, axis=0)


def crop_face(frame: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """The 224×224 crop of ``crop_video`` around a smoothed (s, x, y); same channel order as
    ``frame``."""
    s, x, y = (float(v) for v in centre)
    pad = int(s * (1 + 2 * CROP_SCALE))
    padded = np.pad(frame, ((pad, pad), (pad, pad), (0, 0)), "constant", constant_values=(PAD_VALUE, PAD_VALUE))
    my, mx = y + pad, x + pad
    rows = slice(int(my - s), int(my + s * (1 + 2 * CROP_SCALE)))
    columns = slice(int(mx - s * (1 + CROP_SCALE)), int(mx + s * (1 + CROP_SCALE)))
    face = padded[rows, columns]
    return cv2.resize(face, (CROP_SIZE, CROP_SIZE))


# -- embeddings and scores -----------------------------------------------------------------------


def lip_windows(crops: np.ndarray) -> torch.Tensor:
    """(T, 224, 224, 3) RGB uint8 crops → (T − 4, 3, 5, 224, 224) float32 BGR windows."""
    video = torch.from_numpy(np.ascontiguousarray(crops[..., ::-1])).permute(3, 0, 1, 2).float()
    return video.unfold(1, WINDOW, 1).permute(1, 0, 4, 2, 3)


@torch.inference_mode()
def lip_embeddings(net, crops: np.ndarray, batch: int = 16) -> np.ndarray:
    """One embedding per 5-frame window of consecutive crops: (T − 4, 1024) float32."""
    windows = lip_windows(crops)
    out = [net.forward_lip(windows[i : i + batch].contiguous(memory_format=torch.channels_last_3d))
           for i in range(0, len(windows), batch)]  # fmt: skip
    return torch.cat(out).numpy() if out else np.zeros((0, EMBEDDING), np.float32)


@torch.inference_mode()
def audio_embeddings(net, features: np.ndarray, count: int, batch: int = 64) -> np.ndarray:
    """Embeddings of MFCC windows ``4v … 4v+19`` for ``v < count``: (count, 1024) float32."""
    cc = torch.from_numpy(features)
    windows = torch.stack([cc[:, MFCC_PER_FRAME * v : MFCC_PER_FRAME * v + MFCC_WINDOW] for v in range(count)])
    windows = windows.unsqueeze(1)
    out = [net.forward_aud(windows[i : i + batch]) for i in range(0, count, batch)]
    return torch.cat(out).numpy() if out else np.zeros((0, EMBEDDING), np.float32)


def offset_distances(lip: np.ndarray, audio: np.ndarray, vshift: int = VSHIFT, chunk: int = 256) -> np.ndarray:
    """``calc_pdist``: (windows, 2·vshift + 1) distances between each lip embedding and the
    audio embeddings ``vshift`` windows either side, zero vectors past the ends."""
    lip_t = torch.from_numpy(lip)
    padded = torch.nn.functional.pad(torch.from_numpy(audio), (0, 0, vshift, vshift))
    shifts = padded.unfold(0, 2 * vshift + 1, 1).transpose(1, 2)  # (windows, offsets, D), a view
    rows = []
    for i in range(0, len(lip), chunk):
        a = lip_t[i : i + chunk, None, :].expand(-1, 2 * vshift + 1, -1)
        rows.append(torch.nn.functional.pairwise_distance(a, shifts[i : i + chunk]))
    return torch.cat(rows).numpy()


@dataclass(frozen=True)
class SyncScore:
    """One face track's scores: LSE-C (``confidence``), LSE-D (``min_distance``), the AV offset
    in frames (positive: the audio leads the video) and the number of windows scored."""

    confidence: float
    min_distance: float
    offset: int
    windows: int


def sync_score(lip: np.ndarray, audio: np.ndarray, vshift: int = VSHIFT) -> SyncScore:
    """``evaluate``'s scores from the lip and audio embeddings of the same windows."""
    mean_distance = torch.from_numpy(offset_distances(lip, audio, vshift)).mean(dim=0)
    min_distance, best = torch.min(mean_distance, 0)
    confidence = torch.median(mean_distance) - min_distance
    return SyncScore(float(confidence), float(min_distance), vshift - int(best), len(lip))


def score_track(net, lip: np.ndarray, audio: np.ndarray, frames: int) -> SyncScore | None:
    """A face track of ``frames`` frames whose 5-frame windows have embeddings ``lip``, with
    its own int16 ``audio`` (starting at its first frame). None when no window has audio."""
    count = min(frames, math.floor(len(audio) / SAMPLES_PER_FRAME)) - WINDOW
    if count < 1:
        return None
    audio_features = audio_embeddings(net, mfcc(audio), count)
    return sync_score(lip[:count], audio_features)
