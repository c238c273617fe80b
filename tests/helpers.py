"""Helpers the tests share: real speech made with espeak-ng and sox, and a clock tests move by hand."""

from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

# One sentence each, without inner punctuation: espeak-ng pauses at commas and full stops.
SENTENCES = (
    "I would like to talk about my order",
    "It has been three weeks and nothing has arrived",
    "Please tell me what is going on",
)


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is not installed; run scripts/test.sh, which installs espeak-ng and sox")
    return path


def speak(text: str, path: Path, *, rate: int = 16000, voice: str = "en", speed_wpm: int = 160, pitch: int = 50) -> Path:
    """Speech from espeak-ng (22.05 kHz), resampled by sox to `rate`, mono 16-bit WAV at `path`."""
    raw = path.with_suffix(".raw22k.wav")
    subprocess.run(
        [_need("espeak-ng"), "-v", voice, "-s", str(speed_wpm), "-p", str(pitch), "-w", str(raw), text],
        check=True,
        capture_output=True,
    )
    subprocess.run([_need("sox"), str(raw), "-r", str(rate), "-c", "1", "-b", "16", str(path)], check=True, capture_output=True)
    raw.unlink()
    return path


def voiced(path: Path) -> np.ndarray:
    """The 16 kHz samples of `path` where the voice sounds: espeak-ng's own leading and trailing silence trimmed (|x| > 0.01)."""
    wav, _ = sf.read(path, dtype="float32")
    loud = np.flatnonzero(np.abs(wav) > 0.01)
    return wav[loud[0] : loud[-1] + 1]


def speak_with_pauses(texts: tuple[str, ...], path: Path, *, pause_s: float = 1.0) -> tuple[Path, list[tuple[float, float]]]:
    """Several sentences separated by `pause_s` of silence (plus `pause_s` before and after).

    Returns the 16 kHz WAV and each sentence's (start_s, end_s) where espeak-ng's voice actually
    sounds (its own leading and trailing silence trimmed by an energy threshold).
    """
    gap = np.zeros(int(pause_s * 16000), dtype=np.float32)
    pieces, bounds, t = [gap], [], pause_s
    for i, text in enumerate(texts):
        wav = voiced(speak(text, path.with_name(f"{path.stem}_{i}.wav")))
        bounds.append((t, t + len(wav) / 16000))
        pieces += [wav, gap]
        t += (len(wav) + len(gap)) / 16000
    sf.write(path, np.concatenate(pieces), 16000, subtype="PCM_16")
    return path, bounds


class ManualClock:
    """A monotonic clock that moves only when told: expiry is tested without sleeping."""

    def __init__(self, start: float = 1000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class HeldRecognizer:
    """Wraps the real recognizer; each reading waits until the test lets it go (a recognizer slower than speech)."""

    def __init__(self, recognizer):
        self._rec = recognizer
        self.random_weights = recognizer.random_weights
        self.min_confidence = recognizer.min_confidence
        self.go = threading.Event()
        self.waiting = threading.Event()  # a reading has begun and waits for `go`

    def operating_point(self):
        return self._rec.operating_point()

    def classify_batch(self, waveforms, *, min_confidence=None):
        self.waiting.set()
        self.go.wait()
        return self._rec.classify_batch(waveforms, min_confidence=min_confidence)
