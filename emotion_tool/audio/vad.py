"""Voice activity detection with silero-vad (its wheel ships the model; nothing is downloaded).

Layer 1, audio in (`emotion_tool.audio`).
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from emotion_tool.config import SAMPLE_RATE


@dataclass(frozen=True)
class VadOptions:
    """How speech is told from silence: the one set of detector settings, for whole files and streams."""

    threshold: float = 0.5  # speech probability above which a 32-ms frame counts as speech (streams: silence below threshold - 0.15)
    min_speech_ms: int = 250  # shorter bursts are ignored
    min_silence_ms: int = 100  # shorter pauses do not split speech (streams: a pause this long closes the utterance)
    speech_pad_ms: int = 30  # added to both ends of each speech span

    def __post_init__(self) -> None:
        if not 0 < self.threshold < 1:
            raise ValueError(f"threshold is a speech probability in (0, 1), got {self.threshold}")
        if self.min_silence_ms <= 0 or self.min_speech_ms < 0 or self.speech_pad_ms < 0:
            raise ValueError(
                "min_silence_ms must be positive and min_speech_ms, speech_pad_ms not negative; got "
                f"{self.min_silence_ms}, {self.min_speech_ms}, {self.speech_pad_ms}"
            )


FRAME = 512  # samples per silero-vad frame at 16 kHz (32 ms): the only frame size its 16 kHz model takes
_CONTEXT = 64  # samples of the previous frame silero-vad's 16 kHz model sees before each frame


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
    """A new silero-vad model, on ONNX Runtime when it is installed (the default), else its TorchScript build.

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
    with warnings.catch_warnings():  # silero-vad's loader trips deprecations inside importlib and torch.jit
        warnings.simplefilter("ignore", DeprecationWarning)
        return silero.load_silero_vad(onnx=True)


_shared_lock = threading.Lock()  # guards the shared model's own state (whole-file detection)
_shared: Any = None


def shared_vad_model() -> Any:
    """The process's one silero-vad model, loaded on first use. Streams keep their own detector state
    (`FrameScorer`); whole-file detection uses the model's state under `_shared_lock`."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = load_vad_model()
        return _shared


class FrameScorer:
    """Speech probabilities of consecutive 32-ms frames of one stream, over the shared model.

    Holds the stream's recurrent state and context itself, so any number of streams share one ONNX
    session (whose `run` is thread-safe). With the TorchScript fallback, whose state lives inside the
    model, each scorer loads a model of its own.
    """

    def __init__(self) -> None:
        model = shared_vad_model()
        self._session = getattr(model, "session", None)
        self._model = model if self._session is not None else load_vad_model()
        self.reset()

    def reset(self) -> None:
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._context = np.zeros((1, _CONTEXT), dtype=np.float32)
        if self._session is None:
            self._model.reset_states()

    def __call__(self, frame: np.ndarray) -> float:
        """Speech probability of `frame` (512,) float32 at 16 kHz, the frame after the previous call's."""
        if self._session is None:
            import torch

            with torch.inference_mode():
                return float(self._model(torch.from_numpy(frame), SAMPLE_RATE).item())
        x = np.concatenate([self._context, frame[None, :]], axis=1)
        out, self._state = self._session.run(
            None, {"input": x, "state": self._state, "sr": np.array(SAMPLE_RATE, dtype=np.int64)}
        )
        self._context = x[:, -_CONTEXT:]
        return float(out.reshape(-1)[0])


class SpeechDetector:
    """Finds speech spans in a 16 kHz waveform with the shared silero model; one call at a time."""

    def __init__(self, options: VadOptions = VadOptions()):
        self.options = options
        self._silero = import_silero_vad()
        self._model = shared_vad_model()

    def speech_spans(self, waveform: np.ndarray) -> list[tuple[int, int]]:
        """Speech in `waveform` (N,) float32 at 16 kHz, as [start, end) sample indices in time order."""
        import torch

        o = self.options
        with _shared_lock, torch.inference_mode():
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
