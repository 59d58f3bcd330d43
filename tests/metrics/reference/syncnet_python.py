"""syncnet_python's scoring, transcribed as the reference for talkbench's LSE-C / LSE-D.

Sources (github.com/joonson/syncnet_python, MIT, Copyright (c) 2016-present Joon Son Chung):
``SyncNetModel.py`` (class ``S``), ``SyncNetInstance.py`` (``calc_pdist``, ``evaluate``,
``loadParameters``) and ``run_pipeline.py`` (``crop_video``). The code is kept line for line;
only the file input/output around it is replaced by in-memory arrays:

- ``crop_video`` reads JPEG frames and writes an XVID .avi; here it takes the BGR frames and
  returns the crops (the codec round trips cannot be reproduced bit for bit).
- ``evaluate`` reads those crops back with ffmpeg + ``cv2.imread`` and the audio with
  ``ffmpeg -ac 1 -acodec pcm_s16le -ar 16000`` + ``scipy.io.wavfile.read``; here it takes the
  BGR crops and the int16 samples. ``ffmpeg_pcm_s16le`` decodes as that ffmpeg command does
  (libswresample to mono 16 kHz signed 16-bit).
- ``crop_video`` cuts the track's audio with ``ffmpeg -ss frame0/25 -to (frameN+1)/25``; here
  the samples are sliced at the same times.
- It returns ``evaluate``'s offset and, as Wav2Lip's ``SyncNetInstance_calc_scores.py`` does,
  ``conf`` (LSE-C) and ``minval`` (LSE-D).
"""

import math

import av
import cv2
import numpy
import python_speech_features
import torch
import torch.nn as nn
from scipy import signal


class S(nn.Module):
    def __init__(self, num_layers_in_fc_layers=1024):
        super(S, self).__init__()

        self.__nFeatures__ = 24
        self.__nChs__ = 32
        self.__midChs__ = 32

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
            nn.Linear(512, 512),
            nn.BatchNorm1d(512),
            nn.ReLU(),
            nn.Linear(512, num_layers_in_fc_layers),
        )

        self.netfclip = nn.Sequential(
            nn.Linear(512, 512),
            nn.BatchNorm1d(512),
            nn.ReLU(),
            nn.Linear(512, num_layers_in_fc_layers),
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

    def forward_aud(self, x):
        mid = self.netcnnaud(x)  # N x ch x 24 x M
        mid = mid.view((mid.size()[0], -1))  # N x (ch x 24)
        out = self.netfcaud(mid)

        return out

    def forward_lip(self, x):
        mid = self.netcnnlip(x)
        mid = mid.view((mid.size()[0], -1))  # N x (ch x 24)
        out = self.netfclip(mid)

        return out


def calc_pdist(feat1, feat2, vshift=10):
    win_size = vshift * 2 + 1

    feat2p = torch.nn.functional.pad(feat2, (0, 0, vshift, vshift))

    dists = []

    for i in range(0, len(feat1)):
        dists.append(torch.nn.functional.pairwise_distance(feat1[[i], :].repeat(win_size, 1), feat2p[i : i + win_size, :]))

    return dists


class SyncNetInstance(torch.nn.Module):
    def __init__(self, dropout=0, num_layers_in_fc_layers=1024):
        super(SyncNetInstance, self).__init__()

        self.__S__ = S(num_layers_in_fc_layers=num_layers_in_fc_layers)

    def evaluate(self, images, audio, sample_rate=16000, batch_size=20, vshift=15):
        """``images``: BGR uint8 crops (what ``cv2.imread`` returns); ``audio``: int16 samples."""
        self.__S__.eval()

        im = numpy.stack(images, axis=3)
        im = numpy.expand_dims(im, axis=0)
        im = numpy.transpose(im, (0, 3, 4, 1, 2))

        imtv = torch.from_numpy(im.astype(float)).float()

        mfcc = zip(*python_speech_features.mfcc(audio, sample_rate))
        mfcc = numpy.stack([numpy.array(i) for i in mfcc])

        cc = numpy.expand_dims(numpy.expand_dims(mfcc, axis=0), axis=0)
        cct = torch.from_numpy(cc.astype(float)).float()

        min_length = min(len(images), math.floor(len(audio) / 640))

        lastframe = min_length - 5
        im_feat = []
        cc_feat = []

        with torch.no_grad():  # syncnet_python keeps only ``.data``; the same numbers
            for i in range(0, lastframe, batch_size):
                im_batch = [imtv[:, :, vframe : vframe + 5, :, :] for vframe in range(i, min(lastframe, i + batch_size))]
                im_in = torch.cat(im_batch, 0)
                im_out = self.__S__.forward_lip(im_in)
                im_feat.append(im_out.data.cpu())

                cc_batch = [cct[:, :, :, vframe * 4 : vframe * 4 + 20] for vframe in range(i, min(lastframe, i + batch_size))]
                cc_in = torch.cat(cc_batch, 0)
                cc_out = self.__S__.forward_aud(cc_in)
                cc_feat.append(cc_out.data.cpu())

        im_feat = torch.cat(im_feat, 0)
        cc_feat = torch.cat(cc_feat, 0)

        dists = calc_pdist(im_feat, cc_feat, vshift=vshift)
        mdist = torch.mean(torch.stack(dists, 1), 1)

        minval, minidx = torch.min(mdist, 0)

        offset = vshift - minidx
        conf = torch.median(mdist) - minval

        return offset.numpy(), conf.numpy(), minval.numpy()

    def loadParameters(self, path):
        loaded_state = torch.load(path, map_location=lambda storage, loc: storage, weights_only=True)

        self_state = self.__S__.state_dict()

        for name, param in loaded_state.items():
            self_state[name].copy_(param)


def crop_video(frames, track, crop_scale=0.40):
    """``frames``: the video's BGR frames; ``track``: {'frame': frame indices, 'bbox': (N, 4)}.
    Returns the track's 224×224 crops."""
    crops = []

    dets = {"x": [], "y": [], "s": []}

    for det in track["bbox"]:
        dets["s"].append(max((det[3] - det[1]), (det[2] - det[0])) / 2)
        dets["y"].append((det[1] + det[3]) / 2)  # crop center x
        dets["x"].append((det[0] + det[2]) / 2)  # crop center y

    # Smooth detections
    dets["s"] = signal.medfilt(dets["s"], kernel_size=13)
    dets["x"] = signal.medfilt(dets["x"], kernel_size=13)
    dets["y"] = signal.medfilt(dets["y"], kernel_size=13)

    for fidx, frame in enumerate(track["frame"]):
        cs = crop_scale

        bs = dets["s"][fidx]  # Detection box size
        bsi = int(bs * (1 + 2 * cs))  # Pad videos by this amount

        image = frames[frame]

        frame = numpy.pad(image, ((bsi, bsi), (bsi, bsi), (0, 0)), "constant", constant_values=(110, 110))
        my = dets["y"][fidx] + bsi  # BBox center Y
        mx = dets["x"][fidx] + bsi  # BBox center X

        face = frame[int(my - bs) : int(my + bs * (1 + 2 * cs)), int(mx - bs * (1 + cs)) : int(mx + bs * (1 + cs))]

        crops.append(cv2.resize(face, (224, 224)))

    return crops


def track_audio(audio, track, frame_rate=25, sample_rate=16000):
    """The samples ``crop_video`` cuts for a track (``-ss frame0/25 -to (frameN+1)/25``)."""
    audiostart = (track["frame"][0]) / frame_rate
    audioend = (track["frame"][-1] + 1) / frame_rate
    return audio[round(audiostart * sample_rate) : round(audioend * sample_rate)]


def ffmpeg_pcm_s16le(path, sample_rate=16000):
    """The samples of ``ffmpeg -i path -ac 1 -vn -acodec pcm_s16le -ar 16000 audio.wav``."""
    chunks = []
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    return numpy.concatenate(chunks).astype(numpy.int16)
