import math

import numpy as np
import pytest

from talkbench import media
from talkbench.metrics.bitrate import continuous_bitrate, discrete_bitrate, measured_bitrate
from talkbench.metrics.utilisation import utilisation


def test_table7_formulas():
    assert discrete_bitrate(12, 4, 625) == pytest.approx(11_146, abs=1)
    assert discrete_bitrate(12, 4, 625) == 12 * 4 * math.log2(625) * 25
    assert continuous_bitrate(20) == 20 * 32 * 25


def test_measured_bitrate_of_an_encoded_clip(sample_clips):
    path = sample_clips[0].video
    info = media.probe(path)
    # against the packets themselves: the video stream's bytes over its duration
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        video_bytes = sum(packet.size for packet in container.demux(stream) if packet.size)
        seconds = float(stream.duration * stream.time_base)
    assert measured_bitrate(path) == pytest.approx(video_bytes * 8 / seconds, rel=0.01)
    whole = measured_bitrate(path, video_only=False)
    assert whole == pytest.approx(path.stat().st_size * 8 / info.duration, rel=0.05)


def test_utilisation_counts_codes_per_codebook():
    codes = 4
    indices = np.zeros((10, 2, 3), dtype=int)  # 2 groups, 3 residual layers
    indices[:, 0, 0] = np.arange(10) % 4  # all 4 codes
    indices[:5, 1, 2] = 1  # codes 0 and 1
    got = utilisation(indices, codes)
    assert got["per_codebook"] == [[1.0, 0.25, 0.25], [0.25, 0.25, 0.5]]
    assert got["per_group"] == pytest.approx([0.5, 1 / 3])
    assert got["per_layer"] == pytest.approx([0.625, 0.25, 0.375])
    assert got["overall"] == pytest.approx(2.5 / 6)


def test_utilisation_rejects_out_of_range_codes():
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        utilisation(np.full((3, 1, 1), 4), 4)
