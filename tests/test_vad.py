"""Voice activity detection."""

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from emotion_tool.audio.vad import SpeechDetector, speech_seconds


def test_finds_each_sentence(sentences_wav):
    path, truth = sentences_wav
    wav, _ = sf.read(path, dtype="float32")
    spans = SpeechDetector().speech_spans(wav)
    assert len(spans) == len(truth), spans
    for (s, e), (ts, te) in zip(spans, truth):
        assert abs(s / 16000 - ts) < 0.3 and abs(e / 16000 - te) < 0.3


def test_silence_and_noise_have_no_speech():
    det = SpeechDetector()
    assert det.speech_spans(np.zeros(16000 * 3, np.float32)) == []
    hum = (0.01 * np.sin(2 * np.pi * 50 * np.arange(48000) / 16000)).astype(np.float32)
    assert det.speech_spans(hum) == []


def test_speech_seconds():
    assert speech_seconds([(0, 16000), (32000, 48000)], 8000, 40000) == 1.0


@pytest.mark.subprocess
def test_import_restores_thread_count():
    code = (
        "import torch; torch.set_num_threads(2)\n"
        "from emotion_tool.audio.vad import SpeechDetector; SpeechDetector()\n"
        "print(torch.get_num_threads())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "2"
