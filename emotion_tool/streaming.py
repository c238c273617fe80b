"""Live audio: find utterances with silero-vad as chunks arrive, and read each one as it closes.

Chunk contract: `StreamingAnalyzer.feed` takes mono samples at `StreamOptions.sample_rate` (16 kHz by
default; other rates are resampled to 16 kHz as they arrive), as a NumPy array of shape (n,) or
(n, 1) — what `sounddevice` hands a callback with `channels=1` — of float32 in [-1, 1] (float64 is
converted) or int16 PCM (scaled by 1/32768). Chunks may have any length, zero included, and need not
match the voice activity detector's 32-ms frames: the analyzer buffers, so the same audio gives the
same utterances and readings however it is chunked.

All state lives in the `StreamingAnalyzer` object: its silero-vad model, the resampler, the open
utterance and the readings. Analysis runs on one worker thread per analyzer, so `feed` returns at
once and is safe to call from an audio callback.
"""

from __future__ import annotations

import math
import threading
import time
import warnings
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, Sequence

import numpy as np
import torch

from .audio import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, check_chunk
from .config import SAMPLE_RATE
from .results import EmotionReading, UtteranceReading
from .vad import load_vad_model

__all__ = ["StreamingAnalyzer", "StreamOptions"]

FRAME = 512  # samples per silero-vad frame at 16 kHz (32 ms): the only frame size its 16 kHz model takes
MAX_UTTERANCE_S = 30.0  # the encoder reads at most 30 s at once (one padded window)
_NEG_THRESHOLD_GAP = 0.15  # silero-vad's hysteresis: a frame is silence below threshold - 0.15
_MIN_CUT_PAUSE = 3 * FRAME  # 96 ms; shorter dips are not pauses to cut a long utterance at (silero uses 98 ms)


@dataclass(frozen=True)
class StreamOptions:
    """How a live stream is split into utterances and read."""

    sample_rate: int = SAMPLE_RATE  # Hz of the chunks fed; other rates than 16 kHz are resampled as they arrive
    threshold: float = 0.5  # speech probability above which a 32-ms frame is speech (below threshold - 0.15: silence)
    min_silence_ms: int = 500  # a pause this long closes the utterance
    min_speech_ms: int = 250  # utterances with less speech than this are noise: dropped without a reading
    speech_pad_ms: int = 100  # audio kept before the first and after the last speech frame of an utterance
    max_utterance_s: float = MAX_UTTERANCE_S  # longer speech is cut (at its latest pause if possible) and goes on
    interim_every_s: float | None = None  # read an utterance in progress every this many seconds; None: never
    max_queue_s: float | None = 120.0  # audio waiting for analysis beyond this is dropped, counted in dropped_s
    min_confidence: float | None = None  # readings whose top probability is below this are flagged uncertain; None: the recognizer's (0.5, or its calibration's fitted threshold)

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
        if not 0 < self.threshold < 1:
            raise ValueError(f"threshold is a speech probability in (0, 1), got {self.threshold}")
        if self.min_silence_ms <= 0 or self.min_speech_ms < 0 or self.speech_pad_ms < 0:
            raise ValueError(
                "min_silence_ms must be positive and min_speech_ms, speech_pad_ms not negative; got "
                f"{self.min_silence_ms}, {self.min_speech_ms}, {self.speech_pad_ms}"
            )
        if not 1.0 <= self.max_utterance_s <= MAX_UTTERANCE_S:
            raise ValueError(
                f"max_utterance_s must be in [1, {MAX_UTTERANCE_S:g}] seconds (the encoder reads at most "
                f"{MAX_UTTERANCE_S:g} s at once), got {self.max_utterance_s}"
            )
        if self.speech_pad_ms / 1000 >= self.max_utterance_s / 2:
            raise ValueError(
                f"speech_pad_ms={self.speech_pad_ms} leaves no room in max_utterance_s={self.max_utterance_s}; "
                "keep the padding under half the longest utterance"
            )
        if self.interim_every_s is not None and self.interim_every_s <= 0:
            raise ValueError(f"interim_every_s must be positive seconds or None, got {self.interim_every_s}")
        if self.max_queue_s is not None and self.max_queue_s <= 0:
            raise ValueError(f"max_queue_s must be positive seconds or None (unbounded), got {self.max_queue_s}")
        if self.min_confidence is not None and not 0 <= self.min_confidence <= 1:
            raise ValueError(f"min_confidence is a probability in [0, 1], got {self.min_confidence}")


class _Classifier(Protocol):
    """What the analyzer needs of a recognizer (an `EmotionRecognizer`, or a wrapper around one)."""

    def classify_batch(
        self, waveforms: Sequence[np.ndarray], *, min_confidence: float | None = None
    ) -> list[EmotionReading]: ...


class StreamingAnalyzer:
    """Reads emotions from a live stream, one utterance at a time.

    Feed chunks as they arrive (see the module docstring for the chunk contract). A worker thread
    resamples them to 16 kHz, runs silero-vad on 32-ms frames and, when a pause of
    `min_silence_ms` closes an utterance, reads it with `recognizer.classify_batch` as one padded
    30-s window (the published operating point), with its times shifted into the stream.

    Audio is queued while the model is busy; beyond `max_queue_s` of waiting audio, new chunks are
    dropped and counted in `dropped_s` (the open utterance closes at the gap, and stream time runs on
    across it). Errors of the worker are raised by the next `poll`, `push` or `flush`. Close the
    analyzer (or use it in a `with` block) to stop its worker thread.

    Example:
        >>> with StreamingAnalyzer(rec, options=StreamOptions(sample_rate=48000)) as an:
        ...     stream = sounddevice.InputStream(48000, channels=1, callback=lambda x, *_: an.feed(x))
        ...     ...  # later, from the main thread:
        ...     for u in an.poll():
        ...         print(u.index, u.start_s, u.end_s, u.reading.describe())
    """

    def __init__(self, recognizer: _Classifier, *, options: StreamOptions = StreamOptions()):
        self.recognizer = recognizer
        self.options = options
        with warnings.catch_warnings():  # silero-vad's loader trips deprecations inside importlib and torch.jit
            warnings.simplefilter("ignore", DeprecationWarning)
            vad_model = load_vad_model()
        self._segmenter = _Segmenter(options, vad_model)
        self._resampler: Any = None
        self._in_samples = 0  # input samples taken by the worker, dropped ones included
        self._index = 0  # index of the next final reading
        self._cv = threading.Condition()
        self._queue: deque[_Item] = deque()
        self._queued = 0  # input samples waiting in the queue
        self._max_queued = None if options.max_queue_s is None else int(options.max_queue_s * options.sample_rate)
        self._enqueued = 0  # items ever queued ...
        self._done = 0  # ... and handled (or discarded by reset/close)
        self._dropped = 0  # input samples dropped by a full queue
        self._outbox: list[UtteranceReading] = []
        self._trace: list[UtteranceReading] = []
        self._error: BaseException | None = None
        self._closed = False
        self._worker = threading.Thread(target=self._work, name="emotion-streaming-analyzer", daemon=True)
        self._worker.start()

    # --- the caller's side --------------------------------------------------------------------------

    def feed(self, chunk: Any) -> None:
        """Queues a chunk for analysis and returns at once; safe to call from an audio callback.

        Raises:
            AudioError: the chunk is not mono float32/float64/int16 samples, or holds NaN or infinity.
            RuntimeError: the analyzer is closed.
        """
        self._enqueue(_Item("audio", check_chunk(chunk), time.monotonic()), bounded=True)

    def push(self, chunk: Any) -> list[UtteranceReading]:
        """Feeds a chunk, waits until everything fed so far is analysed, and returns the new readings.

        Unlike `feed`, `push` never drops audio: it waits instead.
        """
        return self._wait(self._enqueue(_Item("audio", check_chunk(chunk), time.monotonic()), bounded=False))

    def poll(self) -> list[UtteranceReading]:
        """Readings finished since the last `poll`, `push` or `flush`, in order; does not wait."""
        with self._cv:
            error, self._error = self._error, None
            out, self._outbox = self._outbox, []
        if error is not None:
            raise RuntimeError(f"streaming analysis failed: {error}") from error
        return out

    def flush(self) -> list[UtteranceReading]:
        """Ends the input so far: closes the open utterance, waits, and returns the new readings.

        Feeding may go on afterwards; stream time continues where it stopped.
        """
        return self._wait(self._enqueue(_Item("flush", None, time.monotonic()), bounded=False))

    def reset(self) -> None:
        """Starts over: drops queued audio, the open utterance, unread readings and the trace; time restarts at 0."""
        with self._cv:
            self._check_open()
            self._discard_queue()
        self._wait(self._enqueue(_Item("reset", None, time.monotonic()), bounded=False))
        with self._cv:
            self._outbox = []
            self._error = None

    def close(self) -> None:
        """Stops the worker. Audio not analysed yet is discarded: `flush()` first to keep it."""
        with self._cv:
            if self._closed:
                return
            self._discard_queue()
            self._closed = True
            self._queue.append(_Item("stop", None, time.monotonic()))
            self._cv.notify_all()
        if threading.current_thread() is not self._worker:
            self._worker.join()

    def __enter__(self) -> "StreamingAnalyzer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def trace(self) -> list[UtteranceReading]:
        """Every final (not interim) reading so far, in stream order."""
        with self._cv:
            return list(self._trace)

    @property
    def dropped_s(self) -> float:
        """Seconds of input dropped because the queue was full (`max_queue_s`); 0 when nothing was lost."""
        return self._dropped / self.options.sample_rate

    @property
    def speaking(self) -> bool:
        """Whether an utterance is open at the end of the audio analysed so far."""
        return self._segmenter.speaking

    @property
    def stream_s(self) -> float:
        """Seconds of stream analysed so far (dropped audio included)."""
        return self._segmenter.end / SAMPLE_RATE

    def __repr__(self) -> str:
        return f"StreamingAnalyzer({self.recognizer!r}, options={self.options!r})"

    def _enqueue(self, item: "_Item", *, bounded: bool) -> int:
        with self._cv:
            self._check_open()
            if item.kind == "audio":
                n = item.samples.shape[0]
                if n == 0:
                    return self._enqueued
                if bounded and self._max_queued is not None and self._queued and self._queued + n > self._max_queued:
                    self._dropped += n
                    if self._queue and self._queue[-1].kind == "gap":
                        self._queue[-1].dropped += n
                        return self._enqueued
                    item = _Item("gap", None, item.fed_at, dropped=n)
                else:
                    self._queued += n
            self._queue.append(item)
            self._enqueued += 1
            self._cv.notify_all()
            return self._enqueued

    def _wait(self, seq: int) -> list[UtteranceReading]:
        with self._cv:
            while self._done < seq:
                if not self._worker.is_alive():
                    raise RuntimeError("the analyzer's worker has stopped; create a new StreamingAnalyzer")
                self._cv.wait(timeout=1.0)
        return self.poll()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this StreamingAnalyzer is closed; create a new one")

    def _discard_queue(self) -> None:
        """Drops queued items (caller holds the lock); they count as handled."""
        self._done += len(self._queue)
        self._queue.clear()
        self._queued = 0

    # --- the worker's side --------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._cv:
                while not self._queue:
                    self._cv.wait()
                item = self._queue.popleft()
                if item.kind == "audio":
                    self._queued -= item.samples.shape[0]
            try:
                if item.kind == "stop":
                    return
                self._handle(item)
            except Exception as e:  # reported to the caller by the next poll/push/flush
                with self._cv:
                    if self._error is None:
                        self._error = e
            finally:
                with self._cv:
                    self._done += 1
                    self._cv.notify_all()

    def _handle(self, item: "_Item") -> None:
        seg = self._segmenter
        if item.kind == "audio":
            self._in_samples += item.samples.shape[0]
            self._read(seg.add(self._resample(item.samples), item.fed_at))
        elif item.kind in ("flush", "gap"):
            spans = seg.add(self._drain_resampler(), item.fed_at)
            spans += seg.finish(item.fed_at)
            if item.kind == "gap":
                self._in_samples += item.dropped
                seg.jump_to(round(self._in_samples * SAMPLE_RATE / self.options.sample_rate))
            self._read(spans)
        elif item.kind == "reset":
            seg.reset()
            self._resampler = None
            self._in_samples = 0
            self._index = 0
            with self._cv:
                self._trace = []
                self._outbox = []
                self._dropped = 0

    def _resample(self, x: np.ndarray) -> np.ndarray:
        if self.options.sample_rate == SAMPLE_RATE:
            return x
        if self._resampler is None:
            import soxr

            # Stateful, so chunk edges leave no trace: the output does not depend on how input is chunked.
            self._resampler = soxr.ResampleStream(
                self.options.sample_rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ"
            )
        return self._resampler.resample_chunk(x, last=False)

    def _drain_resampler(self) -> np.ndarray:
        """What the resampler still holds, at the end of a stretch of input; the next chunk starts a new one."""
        resampler, self._resampler = self._resampler, None
        if resampler is None:
            return np.zeros(0, dtype=np.float32)
        return resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)

    def _read(self, spans: list["_Span"]) -> None:
        # One utterance per call: the same audio then gives the same numbers however chunks fell.
        for span in spans:
            reading = self.recognizer.classify_batch([span.audio], min_confidence=self.options.min_confidence)[0]
            start_s, end_s = span.start / SAMPLE_RATE, span.end / SAMPLE_RATE
            utterance = UtteranceReading(
                index=self._index,
                start_s=start_s,
                end_s=end_s,
                reading=reading.model_copy(update={"start_s": start_s, "end_s": end_s}),
                interim=span.interim,
                cut=span.cut,
                latency_s=max(0.0, time.monotonic() - span.closed_at),
            )
            with self._cv:
                self._outbox.append(utterance)
                if not span.interim:
                    self._trace.append(utterance)
            if not span.interim:
                self._index += 1


@dataclass
class _Item:
    """One entry of the worker's queue."""

    kind: Literal["audio", "gap", "flush", "reset", "stop"]
    samples: Any  # np.ndarray (n,) float32 at the input rate, for "audio"
    fed_at: float  # time.monotonic() when it was queued
    dropped: int = 0  # input samples lost, for "gap"


@dataclass
class _Span:
    """An utterance (or, if interim, its part so far) ready to be read."""

    start: int  # stream samples at 16 kHz
    end: int
    audio: np.ndarray = field(repr=False)  # (end - start,) float32 at 16 kHz
    interim: bool
    cut: bool
    closed_at: float  # time.monotonic() when the audio that closed it was fed


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


class _Segmenter:
    """Utterance boundaries from silero-vad speech probabilities on consecutive 32-ms frames.

    Follows silero-vad's `VADIterator` (threshold with hysteresis, speech padding) and adds
    `min_speech_ms`, the cut at `max_utterance_s` and interim spans. Not thread-safe: the worker owns it.
    """

    def __init__(self, options: StreamOptions, vad_model: Any):
        self._model = vad_model
        self._threshold = options.threshold
        self._neg_threshold = max(options.threshold - _NEG_THRESHOLD_GAP, 0.01)
        self._pad = _ms(options.speech_pad_ms)
        self._min_silence = _ms(options.min_silence_ms)
        self._min_speech = _ms(options.min_speech_ms)
        self._max_len = int(options.max_utterance_s * SAMPLE_RATE)
        self._interim = None  # samples between interim readings
        if options.interim_every_s is not None:
            self._interim = max(FRAME, int(options.interim_every_s * SAMPLE_RATE))
        self.reset()

    def reset(self, at: int = 0) -> None:
        self._model.reset_states()
        self._tape = _Tape(at)
        self._pos = at  # next sample the detector reads
        self._last_end = at  # end of the previous utterance: the next one's padding stops there
        self._open: int | None = None  # start of the open utterance (padding included)
        self._speech_start = at  # its first speech frame
        self._continued = False  # whether it is the rest of an utterance cut at max_utterance_s
        self._silence_start: int | None = None  # start of the silence it is in, if any
        self._pause: int | None = None  # middle of its latest pause, where a cut would go
        self._next_interim = at

    @property
    def speaking(self) -> bool:
        return self._open is not None

    @property
    def end(self) -> int:
        return self._tape.end

    def add(self, x: np.ndarray, fed_at: float) -> list[_Span]:
        """Takes 16 kHz samples and returns the spans they close (and interim spans due)."""
        self._tape.append(x)
        spans: list[_Span] = []
        with torch.inference_mode():
            while self._pos + FRAME <= self._tape.end:
                frame = torch.from_numpy(self._tape.slice(self._pos, self._pos + FRAME))
                prob = float(self._model(frame, SAMPLE_RATE).item())
                self._pos += FRAME
                self._step(prob, fed_at, spans)
        if self._open is None:  # keep what padding may need, and what the detector has yet to read
            self._tape.forget_before(min(self._pos, max(self._pos - self._pad, self._last_end)))
        return spans

    def finish(self, closed_at: float) -> list[_Span]:
        """Closes the open utterance at the end of the audio so far (samples short of a frame included)."""
        if self._open is None:
            return []
        end = self._tape.end
        speech_end = end if self._silence_start is None else self._silence_start
        if self._silence_start is not None:
            end = min(self._silence_start + self._pad, end)
        return self._close(end, speech_end, closed_at)

    def jump_to(self, at: int) -> None:
        """Continues after a gap in the input: stream time jumps to `at`, the detector starts afresh."""
        self.reset(max(at, self._tape.end))

    def _step(self, prob: float, fed_at: float, spans: list[_Span]) -> None:
        frame_start, now = self._pos - FRAME, self._pos
        if self._open is None:
            if prob >= self._threshold:
                self._open = max(frame_start - self._pad, self._last_end, self._tape.start)
                self._speech_start = frame_start
                self._continued = False
                self._silence_start = self._pause = None
                self._next_interim = self._open + (self._interim or 0)
            return
        if prob >= self._threshold:
            self._silence_start = None
        elif prob < self._neg_threshold:  # between the two thresholds nothing changes (hysteresis)
            if self._silence_start is None:
                self._silence_start = frame_start
            if now - self._silence_start >= _MIN_CUT_PAUSE:
                self._pause = (self._silence_start + now) // 2
            if now - self._silence_start >= self._min_silence:
                end = min(self._silence_start + self._pad, now)
                spans += self._close(end, self._silence_start, fed_at)
                return
        if now - self._open + FRAME > self._max_len:
            if self._silence_start is not None:  # already in a pause: end the utterance there
                spans += self._close(min(self._silence_start + self._pad, now), self._silence_start, fed_at)
            else:
                spans.append(self._cut(fed_at))
        elif self._interim is not None and now >= self._next_interim:
            self._next_interim += self._interim
            spans.append(_Span(self._open, now, self._tape.slice(self._open, now), True, False, fed_at))

    def _close(self, end: int, speech_end: int, closed_at: float) -> list[_Span]:
        start, self._open = self._open, None
        assert start is not None
        # The rest of a cut utterance is speech already, however short; anything else must last min_speech_ms.
        min_speech = 1 if self._continued else self._min_speech
        if speech_end - self._speech_start < min_speech or end <= start:
            return []  # a click or a breath, not speech to read
        self._last_end = end
        return [_Span(start, end, self._tape.slice(start, end), False, False, closed_at)]

    def _cut(self, closed_at: float) -> _Span:
        """Cuts the open utterance at its latest pause in its second half, else here; the rest goes on."""
        start, now = self._open, self._pos
        assert start is not None
        cut = self._pause if self._pause is not None and self._pause - start >= self._max_len // 2 else now
        span = _Span(start, cut, self._tape.slice(start, cut), False, True, closed_at)
        self._open = self._speech_start = self._last_end = cut
        self._continued = True
        self._pause = None
        if self._silence_start is not None:
            self._silence_start = max(self._silence_start, cut)
        self._next_interim = cut + (self._interim or 0)
        self._tape.forget_before(cut)
        return span


def _ms(ms: float) -> int:
    return int(ms * SAMPLE_RATE / 1000)
