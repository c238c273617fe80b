"""Where the audio comes from: the microphone through PortAudio, or a file replayed in real time; the input level."""

from __future__ import annotations

import math
import os
import threading
import time
from typing import Any, Callable

import numpy as np

from emotion_tool import AudioError
from emotion_tool.live.streaming import StreamingAnalyzer

from .records import BLOCK_S, DemoError


# --- audio sources -----------------------------------------------------------------------------------

AudioCallback = Callable[[np.ndarray, int, Any, Any], None]
"""sounddevice's InputStream callback: callback(indata (frames, channels), frames, time, status)."""


def _import_sounddevice() -> Any:
    try:
        import sounddevice
    except OSError as e:  # sounddevice raises OSError when the PortAudio library is missing
        raise DemoError(
            f"PortAudio is not available ({e}); install it (Debian/Ubuntu: apt install libportaudio2, "
            "macOS: brew install portaudio), or try the demo without a microphone: --input-file FILE"
        ) from e
    except ImportError as e:
        raise DemoError(
            "the microphone needs the sounddevice package; pip install 'emotion-tool[demo]', "
            "or try the demo without a microphone: --input-file FILE"
        ) from e
    return sounddevice


def _device_arg(device: str | None) -> int | str | None:
    return int(device) if device is not None and device.isdigit() else device


def open_microphone(device: str | None, callback: AudioCallback) -> tuple[Any, int, str]:
    """An unstarted `sounddevice.InputStream` (mono float32) on `device` (index, name part, or the default).

    Returns:
        (stream, sample rate in Hz, device name).
    """
    sd = _import_sounddevice()
    try:
        info = sd.query_devices(_device_arg(device), kind="input")
    except (ValueError, sd.PortAudioError) as e:
        which = f"input device {device!r}" if device is not None else "default input device"
        raise DemoError(
            f"no {which} ({e}); list devices with --list-devices, pick one with --device, "
            "or try the demo without a microphone: --input-file FILE"
        ) from e
    rate = int(info["default_samplerate"])
    try:
        stream = sd.InputStream(
            device=info["index"],
            channels=1,
            samplerate=rate,
            dtype="float32",
            blocksize=int(rate * BLOCK_S),
            callback=callback,
        )
    except sd.PortAudioError as e:
        raise DemoError(f"cannot open {info['name']!r} for recording at {rate} Hz ({e}); try another --device") from e
    return stream, rate, str(info["name"])


class FileSource:
    """Replays a file through an input callback at real-time pace, like an `InputStream` would.

    A thread hands `callback` blocks of (frames, 1) float32 at the file's own rate and sleeps each
    block's duration (against a clock, so delays do not add up).
    """

    def __init__(self, path: str | os.PathLike, callback: AudioCallback, *, block_s: float = BLOCK_S):
        from emotion_tool.audio import AudioError, read_frames

        try:
            wav, self.samplerate = read_frames(path)
        except AudioError as e:
            raise DemoError(f"cannot read {path} ({e}); give a WAV, FLAC, OGG or MP3 file") from e
        if wav.shape[0] == 0:
            raise DemoError(f"{path} holds no audio")
        self._wav = wav.mean(axis=1, keepdims=True, dtype=np.float32)
        self._callback = callback
        self._block = max(1, int(self.samplerate * block_s))
        self._stop = threading.Event()
        self.finished = threading.Event()
        self._thread = threading.Thread(target=self._play, name="file-source", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def close(self) -> None:
        self.stop()

    def _play(self) -> None:
        t0 = time.monotonic()
        for i in range(0, self._wav.shape[0], self._block):
            if self._stop.is_set():
                break
            block = self._wav[i : i + self._block]
            self._callback(block, block.shape[0], None, None)
            delay = t0 + (i + block.shape[0]) / self.samplerate - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
        self.finished.set()


class InputMonitor:
    """The input callback: meters the level and feeds the analyzer. Never raises into the audio thread."""

    def __init__(self, analyzer: StreamingAnalyzer | None = None):
        self.analyzer = analyzer  # set before the source starts
        self.level_db = -math.inf  # RMS of the latest block, dB full scale
        self.overflows = 0  # blocks the audio system reported as lost
        self.error: str | None = None  # the first bad chunk, if any

    def __call__(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        if status:
            self.overflows += 1
        rms = float(np.sqrt(np.mean(np.square(indata, dtype=np.float64)))) if frames else 0.0
        self.level_db = 20 * math.log10(rms) if rms > 0 else -math.inf
        if self.analyzer is None:
            return
        try:
            self.analyzer.feed(indata)
        except (AudioError, RuntimeError) as e:
            if self.error is None:
                self.error = str(e)
