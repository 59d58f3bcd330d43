"""Shared by the baseline tests: a fake competitor method (a script the fixtures write into a
fake checkout) and a preset that runs it."""

from __future__ import annotations

import sys

from talkbench.baselines.external import ExternalMethod
from talkbench.baselines.external.preset import Preset
from talkbench.baselines.method import Task

FAKE_METHOD = r'''"""A stand-in for a competitor method's inference script, run as a real subprocess by the
adapter tests. It writes a real H.264 video with PyAV at the wrong frame rate and size (30 fps,
200x200 by default), like most methods do, and has failure modes: a non-zero exit with a
stderr message, a clean exit that writes nothing, and a hang (with a child process, to check
that the whole process group is killed on time-out)."""

import argparse
import json
import os
import subprocess
import sys
import time
import wave
from fractions import Fraction

import av
import numpy as np
from PIL import Image

p = argparse.ArgumentParser()
p.add_argument("--portrait")
p.add_argument("--audio")
p.add_argument("--out")
p.add_argument("--mode", default="ok")
p.add_argument("--fps", type=float, default=30.0)
p.add_argument("--size", type=int, default=200)
p.add_argument("--config")
p.add_argument("--pidfile")
p.add_argument("--frames_dir")
a = p.parse_args()

if a.frames_dir:
    names = sorted(os.listdir(a.frames_dir))
    print(f"driving frames: {len(names)} {names[0]}")

if a.pidfile:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    with open(a.pidfile, "w") as fh:
        fh.write(f"{os.getpid()} {child.pid}")
if a.mode == "fail":
    print("loading checkpoints ...")
    print("RuntimeError: CUDA out of memory (fake)", file=sys.stderr)
    sys.exit(3)
if a.mode == "nothing":
    print("done")
    sys.exit(0)
if a.mode == "sleep":
    time.sleep(120)
if a.mode == "config":
    with open(a.config) as fh:
        cfg = json.load(fh)
    a.portrait = cfg["portrait"]
    if not os.path.exists(cfg["staged"]):
        sys.exit(f"staged input {cfg['staged']} is missing")
    os.makedirs(cfg["leftover"], exist_ok=True)
    with open(os.path.join(cfg["leftover"], "cache.txt"), "w") as fh:
        fh.write("a cache the method leaves behind")

with wave.open(a.audio) as w:
    seconds = w.getnframes() / w.getframerate()
n = int(round(seconds * a.fps))
img = np.asarray(Image.open(a.portrait).convert("RGB").resize((a.size, a.size)))
cols = 3 if a.mode == "grid" else 1
with av.open(os.path.join(a.out, "result.mp4"), "w") as out:
    stream = out.add_stream("libx264", rate=Fraction(a.fps).limit_denominator(1001))
    stream.width, stream.height, stream.pix_fmt = a.size * cols, a.size, "yuv420p"
    for i in range(n):
        frame = img.copy()
        frame[:8, : (i * 7) % a.size] = 255  # a moving bar: frames differ
        if cols == 3:
            frame = np.concatenate([np.zeros_like(frame), frame, np.full_like(frame, 128)], axis=1)
        out.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
    out.mux(stream.encode(None))
print(f"wrote {n} frames")
'''


FPS = 25.0


def clip_frames(clip, fps: float = FPS) -> int:
    """The reference's frame count at ``fps``, from the clip's duration in the corpus listing."""
    return round(clip.duration * fps)


def task_for(clip, frames: int | None = None):
    frames = clip_frames(clip) if frames is None else frames
    return Task(kind="speech-driven", clip_id=clip.id, reference=clip.video, fps=FPS, frames=frames)


def fake_preset(*args: str, **overrides) -> Preset:
    data = {
        "name": "Fake",
        "paper": {"title": "A fake method for tests", "authors": ["T. Est"]},
        "tasks": ["speech-driven"],
        "code": {"public": True, "repository": "talkbench/fake", "commit": "0" * 40,
                 "sources": [{"path": "fake_method.py", "commit": "0" * 40}]},
        "requires_gpu": False,
        "inputs": {"portrait": {"size": 256}, "audio": {"sample_rate": 16000}},
        "steps": [{"run": ["{python}", "fake_method.py", "--portrait", "{portrait}", "--audio", "{audio}",
                           "--out", "{output_dir}", *args]}],
        "output": {"glob": "*.mp4"},
    }
    data.update(overrides)
    return Preset.model_validate(data)


def method(preset, repo, **kw):
    return ExternalMethod(preset, repo, python=sys.executable, **kw)
