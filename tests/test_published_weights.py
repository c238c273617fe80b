"""Checks that need the published weights or a GPU; skipped (with the reason) where those are missing.

    EMOTION_TOOL_MODEL=/path/to/MERaLiON-SER-v1 bash scripts/test.sh tests/test_published_weights.py
"""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from emotion_tool import EmotionRecognizer


def _published_dir() -> Path:
    value = os.environ.get("EMOTION_TOOL_MODEL", "")
    path = Path(value).expanduser()
    if not value or not (path / "model.safetensors").is_file():
        pytest.skip("set EMOTION_TOOL_MODEL to a local copy of MERaLiON/MERaLiON-SER-v1 to run this test")
    if json.loads((path / "config.json").read_text()).get("emotion_tool_random_init"):
        pytest.skip(f"{path} holds random weights, not the published checkpoint")
    return path


@pytest.mark.weights
def test_published_checkpoint_loads_strictly_and_matches_the_reference(speech_wav):
    from reference_ser import ReferenceSER

    path = _published_dir()
    rec = EmotionRecognizer.from_pretrained(path, device="cpu")
    assert not rec.random_weights
    assert rec.info().parameters == 313_362_581
    wav, _ = sf.read(speech_wav, dtype="float32")
    reading = rec.classify_batch([wav])[0]
    p_ref, d_ref = ReferenceSER(path)(wav)
    assert np.abs(np.array(list(reading.probabilities.values())) - p_ref).max() < 1e-3
    assert np.abs(np.array([reading.valence, reading.arousal, reading.dominance]) - d_ref).max() < 1e-3


@pytest.mark.gpu
def test_gpu_reduced_precision_stays_close(tiny_checkpoint, speech_wav):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    cpu = EmotionRecognizer.from_pretrained(tiny_checkpoint, device="cpu").analyze(speech_wav).summary
    gpu = EmotionRecognizer.from_pretrained(tiny_checkpoint, device="cuda").analyze(speech_wav).summary
    fp32 = EmotionRecognizer.from_pretrained(tiny_checkpoint, device="cuda", dtype="float32").analyze(speech_wav).summary
    p = lambda r: np.array(list(r.probabilities.values()))  # noqa: E731
    assert np.abs(p(cpu) - p(fp32)).max() < 1e-3
    assert np.abs(p(cpu) - p(gpu)).max() < 0.1  # bf16/fp16 on the amplifying random test network
