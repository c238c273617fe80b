"""Utterances in a live stream: a synchronous segmenter in the shape of silero-vad's `VADIterator`.

Chunk contract (for `UtteranceSegmenter.push`): mono samples at `StreamOptions.sample_rate` (16 kHz by
default; other rates are resampled to 16 kHz as they arrive, statefully), as a NumPy array (or torch
tensor) of shape (n,) or (n, 1) — what `sounddevice` hands a callback with `channels=1` — of float32
in [-1, 1] (float64 is converted) or int16 PCM (scaled by 1/32768). Chunks may have any length, zero
included, and need not match the detector's 32-ms frames: the segmenter buffers, so the same audio
gives the same utterances however it is chunked.

The caller owns the loop: `push` runs the detector on the new frames and returns the utterances
they close, at once, on the caller's thread. Threads, queues and event loops wrap it from outside
(`StreamingAnalyzer` is one such wrapper; the MCP server's sessions and the voice-framework plugins
call it directly). All state lives in the object; the silero model itself is shared by the process.

Layer 3, live speech (`emotion_tool.live`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from emotion_tool.audio import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, check_chunk
from emotion_tool.audio.vad import FRAME, FrameScorer, VadOptions
from emotion_tool.config import SAMPLE_RATE

__all__ = ["UtteranceSegmenter", "Utterance", "StreamOptions", "STREAM_VAD"]

MAX_UTTERANCE_S = 30.0  # the encoder reads at most 30 s at once (one padded window)
_NEG_THRESHOLD_GAP = 0.15  # silero-vad's hysteresis: a frame is silence below threshold - 0.15
_MIN_CUT_PAUSE = 3 * FRAME  # 96 ms; shorter dips are not pauses to cut a long utterance at (silero uses 98 ms)

STREAM_VAD = VadOptions(min_silence_ms=500, speech_pad_ms=100)
"""The detector settings of live streams: a 500-ms pause ends a turn (whole files split at 100 ms)."""


@dataclass(frozen=True)
class StreamOptions:
    """How a live stream is split into utterances and read."""

    sample_rate: int = SAMPLE_RATE  # Hz of the chunks fed; other rates than 16 kHz are resampled as they arrive
    vad: VadOptions = STREAM_VAD  # speech vs silence; min_silence_ms closes an utterance, min_speech_ms drops shorter ones, speech_pad_ms is kept around each
    max_utterance_s: float = MAX_UTTERANCE_S  # longer speech is cut (at its latest pause if possible) and goes on
    interim_every_s: float | None = None  # read an utterance in progress every this many seconds; None: never
    max_queue_s: float | None = 120.0  # (StreamingAnalyzer) audio waiting for analysis beyond this is dropped, counted in dropped_s
    min_confidence: float | None = None  # readings whose top probability is below this are flagged uncertain; None: the recognizer's (0.5, or its calibration's fitted threshold)
    read_ahead: bool = False  # also hand out each utterance once its pause is speech_pad_ms old (`Utterance.ahead`), holding the samples it will close with, so it can be read during the rest of the pause; changes no number, costs a wasted read when speech resumes

    def __post_init__(self) -> None:
        if (
            isinstance(self.sample_rate, bool)
            or not isinstance(self.sample_rate, (int, float))
            or not math.isfinite(self.sample_rate)
            or int(self.sample_rate) != self.sample_rate
        ):
            raise ValueError(f"sample_rate must be an integer number of Hz, got {self.sample_rate!r}")
        if not MIN_SAMPLE_RATE <= self.sample_rate <= MAX_SAMPLE_RATE:
            raise ValueError(
                f"sample_rate={self.sample_rate} Hz is not a usable rate; give the input's true rate, "
                f"between {MIN_SAMPLE_RATE} and {MAX_SAMPLE_RATE}"
            )
        if not isinstance(self.vad, VadOptions):
            raise ValueError(f"vad must be a VadOptions, got {type(self.vad).__name__}")
        if not 1.0 <= self.max_utterance_s <= MAX_UTTERANCE_S:
            raise ValueError(
                f"max_utterance_s must be in [1, {MAX_UTTERANCE_S:g}] seconds (the encoder reads at most "
                f"{MAX_UTTERANCE_S:g} s at once), got {self.max_utterance_s}"
            )
        if self.vad.speech_pad_ms / 1000 >= self.max_utterance_s / 2:
            raise ValueError(
                f"speech_pad_ms={self.vad.speech_pad_ms} leaves no room in max_utterance_s={self.max_utterance_s}; "
                "keep the padding under half the longest utterance"
            )
        if self.interim_every_s is not None and self.interim_every_s <= 0:
            raise ValueError(f"interim_every_s must be positive seconds or None, got {self.interim_every_s}")
        if self.max_queue_s is not None and self.max_queue_s <= 0:
            raise ValueError(f"max_queue_s must be positive seconds or None (unbounded), got {self.max_queue_s}")
        if self.min_confidence is not None and not 0 <= self.min_confidence <= 1:
            raise ValueError(f"min_confidence is a probability in [0, 1], got {self.min_confidence}")


@dataclass
class Utterance:
    """An utterance the segmenter closed (or, if `interim`, its part so far), ready to be read."""

    start: int  # first sample, in 16-kHz stream samples (padding included)
    end: int  # one past its last sample
    audio: np.ndarray = field(repr=False)  # (end - start,) float32 at 16 kHz
    interim: bool  # an utterance still in progress (StreamOptions.interim_every_s)
    cut: bool  # cut at max_utterance_s; the rest follows as the next utterance
    speech_end_at: float  # clock time when the chunk holding its last voiced frame was pushed: latency starts here
    ahead: bool = False  # not closed yet (StreamOptions.read_ahead): the open utterance as it closes if its pause lasts min_silence_ms

    @property
    def start_s(self) -> float:
        return self.start / SAMPLE_RATE

    @property
    def end_s(self) -> float:
        return self.end / SAMPLE_RATE


class UtteranceSegmenter:
    """Splits a live stream into utterances with silero-vad: `push(chunk) -> closed utterances`.

    Follows silero-vad's `VADIterator` (threshold with hysteresis, speech padding) and adds
    `min_speech_ms`, the cut at `max_utterance_s` and interim utterances. Not thread-safe: one
    caller at a time (wrap it in a lock, a thread or a task from outside).

    Example:
        >>> seg = UtteranceSegmenter(StreamOptions(sample_rate=48000))
        >>> for chunk in chunks:  # any lengths
        ...     for u in seg.push(chunk):
        ...         print(u.start_s, u.end_s)
        >>> closing = seg.flush()  # the end of the input closes the open utterance
    """

    def __init__(self, options: StreamOptions = StreamOptions(), *, clock: Any = time.monotonic):
        self.options = options
        self._clock = clock
        vad = options.vad
        self._scorer = FrameScorer()
        self._threshold = vad.threshold
        self._neg_threshold = max(vad.threshold - _NEG_THRESHOLD_GAP, 0.01)
        self._pad = _ms(vad.speech_pad_ms)
        self._min_silence = _ms(vad.min_silence_ms)
        self._min_speech = _ms(vad.min_speech_ms)
        self._max_len = int(options.max_utterance_s * SAMPLE_RATE)
        self._interim = None  # samples between interim readings
        if options.interim_every_s is not None:
            self._interim = max(FRAME, int(options.interim_every_s * SAMPLE_RATE))
        self._resampler: Any = None
        self.reset()

    # --- the caller's side ----------------------------------------------------------------------------

    def push(self, chunk: Any, *, received_at: float | None = None) -> list[Utterance]:
        """Takes a chunk (see the module docstring) and returns the utterances it closes, in order.

        Args:
            chunk: samples at `options.sample_rate`.
            received_at: clock time the chunk arrived (default: now); utterances' `speech_end_at`
                comes from it.

        Raises:
            AudioError: the chunk is not mono float32/float64/int16 samples, or holds NaN or infinity.
        """
        x = check_chunk(chunk)
        at = self._clock() if received_at is None else received_at
        self._received += x.shape[0]
        return self._add(self._resample(x), at)

    def flush(self, *, received_at: float | None = None) -> list[Utterance]:
        """Ends the input so far: closes the open utterance. Pushing may go on; stream time continues."""
        at = self._clock() if received_at is None else received_at
        out = self._add(self._drain_resampler(), at)
        return out + self._finish()

    def skip(self, n: int, *, received_at: float | None = None) -> list[Utterance]:
        """Input lost: `n` samples at the input rate are missing here. Closes the open utterance at the
        gap and runs stream time on across it; the detector starts afresh after it."""
        out = self.flush(received_at=received_at)
        self._received += n
        self._restart(max(round(self._received * SAMPLE_RATE / self.options.sample_rate), self._tape.end))
        return out

    def reset(self) -> None:
        """Starts over: no open utterance, stream time 0."""
        self._resampler = None
        self._received = 0  # input samples taken, skipped ones included
        self._restart(0)

    @property
    def speaking(self) -> bool:
        """Whether an utterance is open at the end of the audio so far."""
        return self._open is not None

    @property
    def stream_s(self) -> float:
        """Seconds of stream so far (skipped input included)."""
        return self._tape.end / SAMPLE_RATE

    def __repr__(self) -> str:
        return f"UtteranceSegmenter(options={self.options!r})"

    # --- frames -----------------------------------------------------------------------------------------

    def _restart(self, at: int) -> None:
        self._scorer.reset()
        self._tape = _Tape(at)
        self._pos = at  # next sample the detector reads
        self._last_end = at  # end of the previous utterance: the next one's padding stops there
        self._open: int | None = None  # start of the open utterance (padding included)
        self._speech_start = at  # its first speech frame
        self._voiced_at = 0.0  # clock time of its latest voiced frame's chunk
        self._continued = False  # whether it is the rest of an utterance cut at max_utterance_s
        self._silence_start: int | None = None  # start of the silence it is in, if any
        self._pause: int | None = None  # middle of its latest pause, where a cut would go
        self._ahead_for: int | None = None  # the silence whose read-ahead copy was handed out
        self._next_interim = at

    def _resample(self, x: np.ndarray) -> np.ndarray:
        if self.options.sample_rate == SAMPLE_RATE:
            return x
        if self._resampler is None:
            import soxr

            # Stateful, so chunk edges leave no trace: the output does not depend on how input is chunked.
            self._resampler = soxr.ResampleStream(self.options.sample_rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")
        return self._resampler.resample_chunk(x, last=False)

    def _drain_resampler(self) -> np.ndarray:
        """What the resampler still holds, at the end of a stretch of input; the next chunk starts a new one."""
        resampler, self._resampler = self._resampler, None
        if resampler is None:
            return np.zeros(0, dtype=np.float32)
        return resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)

    def _add(self, x: np.ndarray, at: float) -> list[Utterance]:
        self._tape.append(x)
        out: list[Utterance] = []
        while self._pos + FRAME <= self._tape.end:
            prob = self._scorer(self._tape.slice(self._pos, self._pos + FRAME))
            self._pos += FRAME
            self._step(prob, at, out)
        if self._open is None:  # keep what padding may need, and what the detector has yet to read
            self._tape.forget_before(min(self._pos, max(self._pos - self._pad, self._last_end)))
        return out

    def _finish(self) -> list[Utterance]:
        """Closes the open utterance at the end of the audio so far (samples short of a frame included)."""
        if self._open is None:
            return []
        end = self._tape.end
        speech_end = end if self._silence_start is None else self._silence_start
        if self._silence_start is not None:
            end = min(self._silence_start + self._pad, end)
        return self._close(end, speech_end)

    def _step(self, prob: float, at: float, out: list[Utterance]) -> None:
        frame_start, now = self._pos - FRAME, self._pos
        if self._open is None:
            if prob >= self._threshold:
                self._open = max(frame_start - self._pad, self._last_end, self._tape.start)
                self._speech_start = frame_start
                self._voiced_at = at
                self._continued = False
                self._silence_start = self._pause = None
                self._next_interim = self._open + (self._interim or 0)
            return
        if prob >= self._threshold:
            self._silence_start = None
            self._voiced_at = at
        elif prob < self._neg_threshold:  # between the two thresholds nothing changes (hysteresis)
            if self._silence_start is None:
                self._silence_start = frame_start
            if now - self._silence_start >= _MIN_CUT_PAUSE:
                self._pause = (self._silence_start + now) // 2
            if self.options.read_ahead and self._ahead_for != self._silence_start and now - self._silence_start >= self._pad:
                out += self._read_ahead()
            if now - self._silence_start >= self._min_silence:
                out += self._close(min(self._silence_start + self._pad, now), self._silence_start)
                return
        if now - self._open + FRAME > self._max_len:
            if self._silence_start is not None:  # already in a pause: end the utterance there
                out += self._close(min(self._silence_start + self._pad, now), self._silence_start)
            else:
                out.append(self._cut(at))
        elif self._interim is not None and now >= self._next_interim:
            self._next_interim += self._interim
            out.append(Utterance(self._open, now, self._tape.slice(self._open, now), True, False, at))

    def _read_ahead(self) -> list[Utterance]:
        """The open utterance as `_close` will give it if the pause that began lasts: same span, same samples."""
        assert self._open is not None and self._silence_start is not None
        self._ahead_for = self._silence_start
        end = self._silence_start + self._pad
        if self._silence_start - self._speech_start < (1 if self._continued else self._min_speech) or end <= self._open:
            return []  # it would not be read when it closes either
        return [Utterance(self._open, end, self._tape.slice(self._open, end), False, False, self._voiced_at, ahead=True)]

    def _close(self, end: int, speech_end: int) -> list[Utterance]:
        start, self._open = self._open, None
        assert start is not None
        # The rest of a cut utterance is speech already, however short; anything else must last min_speech_ms.
        min_speech = 1 if self._continued else self._min_speech
        if speech_end - self._speech_start < min_speech or end <= start:
            return []  # a click or a breath, not speech to read
        self._last_end = end
        return [Utterance(start, end, self._tape.slice(start, end), False, False, self._voiced_at)]

    def _cut(self, at: float) -> Utterance:
        """Cuts the open utterance at its latest pause in its second half, else here; the rest goes on."""
        start, now = self._open, self._pos
        assert start is not None
        cut = self._pause if self._pause is not None and self._pause - start >= self._max_len // 2 else now
        u = Utterance(start, cut, self._tape.slice(start, cut), False, True, at)
        self._open = self._speech_start = self._last_end = cut
        self._continued = True
        self._pause = None
        if self._silence_start is not None:
            self._silence_start = max(self._silence_start, cut)
        self._next_interim = cut + (self._interim or 0)
        self._tape.forget_before(cut)
        return u


class _Tape:
    """The recent 16 kHz stream, addressed by stream sample index; forgets what lies before `start`."""

    def __init__(self, start: int = 0):
        self.start = start
        self.end = start
        self._data = np.zeros(SAMPLE_RATE * 4, dtype=np.float32)
        self._head = 0  # index in _data of stream sample `start`

    def append(self, x: np.ndarray) -> None:
        size = self.end - self.start
        if self._head + size + x.shape[0] > self._data.shape[0]:
            capacity = max(self._data.shape[0], 2 * (size + x.shape[0]))
            data = np.zeros(capacity, dtype=np.float32) if capacity > self._data.shape[0] else self._data
            data[:size] = self._data[self._head : self._head + size]
            self._data, self._head = data, 0
        self._data[self._head + size : self._head + size + x.shape[0]] = x
        self.end += x.shape[0]

    def forget_before(self, index: int) -> None:
        index = min(max(index, self.start), self.end)
        self._head += index - self.start
        self.start = index

    def slice(self, start: int, end: int) -> np.ndarray:
        if not self.start <= start <= end <= self.end:
            raise IndexError(f"samples [{start}, {end}) are not on the tape, which holds [{self.start}, {self.end})")
        return self._data[self._head + start - self.start : self._head + end - self.start].copy()


def _ms(ms: float) -> int:
    return int(ms * SAMPLE_RATE / 1000)
