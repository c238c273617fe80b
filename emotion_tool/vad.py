"""Voice activity detection with silero-vad (its wheel ships the model; nothing is downloaded)."""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from .config import SAMPLE_RATE


@dataclass(frozen=True)
class VadOptions:
    """How speech is told from silence."""

    threshold: float = 0.5  # speech probability above which a 32-ms frame counts as speech
    min_speech_ms: int = 250  # shorter bursts are ignored
    min_silence_ms: int = 100  # shorter pauses do not split speech
    speech_pad_ms: int = 30  # added to both ends of each speech span


def import_silero_vad() -> Any:
    """Imports silero_vad, undoing the `torch.set_num_threads(1)` it runs at import time."""
    import torch

    threads = torch.get_num_threads()
    try:
        import silero_vad
    except ImportError as e:
        raise RuntimeError("voice activity detection requires silero-vad; pip install silero-vad") from e
    finally:
        torch.set_num_threads(threads)
    return silero_vad


def load_vad_model() -> Any:
    """silero-vad's model, on ONNX Runtime when it is installed (the default), else its TorchScript build.

    The ONNX session runs on one thread of its own. The TorchScript model runs on torch's shared
    thread pool, where each 32-ms frame is a tiny operation: when another process or the emotion
    network keeps the cores busy, a multi-threaded pool turns 0.1 s of detection into tens of seconds.
    """
    silero = import_silero_vad()
    try:
        import onnxruntime  # noqa: F401  (silero-vad imports it itself; this only checks it is there)
    except ImportError:
        warnings.warn(
            "onnxruntime is not installed: voice activity detection runs on torch's thread pool and can be "
            "very slow while the CPU is busy; pip install onnxruntime",
            stacklevel=2,
        )
        return silero.load_silero_vad()
    return silero.load_silero_vad(onnx=True)


class SpeechDetector:
    """Finds speech spans in a 16 kHz waveform. Holds its own silero model; one call at a time."""

    def __init__(self, options: VadOptions = VadOptions()):
        self.options = options
        self._silero = import_silero_vad()
        self._model = load_vad_model()
        self._lock = threading.Lock()

    def speech_spans(self, waveform: np.ndarray) -> list[tuple[int, int]]:
        """Speech in `waveform` (N,) float32 at 16 kHz, as [start, end) sample indices in time order."""
        import torch

        o = self.options
        with self._lock, torch.inference_mode():
            spans = self._silero.get_speech_timestamps(
                torch.from_numpy(np.ascontiguousarray(waveform, dtype=np.float32)),
                self._model,
                threshold=o.threshold,
                sampling_rate=SAMPLE_RATE,
                min_speech_duration_ms=o.min_speech_ms,
                min_silence_duration_ms=o.min_silence_ms,
                speech_pad_ms=o.speech_pad_ms,
            )
            self._model.reset_states()
        return [(int(s["start"]), int(s["end"])) for s in spans]


def speech_seconds(spans: list[tuple[int, int]], start: int, end: int) -> float:
    """Seconds of speech that `spans` (sample indices) put inside [start, end)."""
    total = 0
    for s, e in spans:
        total += max(0, min(e, end) - max(s, start))
    return total / SAMPLE_RATE
