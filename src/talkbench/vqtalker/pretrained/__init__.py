"""The tiny VQTalker checkpoints talkbench trained itself on its sample corpus, so the demo and
the tests can run both stages with nothing downloaded. README.md beside this file says how they
were made and shows their training curves (``*-log.csv``)."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent
TINY_TOKENIZER = HERE / "tiny-tokenizer.pt"  # stage 1, configs/tiny.yaml
TINY_GENERATOR = HERE / "tiny-generator.pt"  # stage 2, configs/generator-tiny.yaml (Whisper units inside)
