"""Live audio on a worker thread: `StreamingAnalyzer` segments a stream and reads each utterance as it closes.

The chunk contract and the segmentation are `emotion_tool.live.segmenter`'s (`UtteranceSegmenter`); this
module only wraps them in a queue and one worker thread per analyzer, so that `feed` returns at once
and is safe to call from an audio callback. Callers that own their loop (a request handler, an
asyncio pipeline) use `UtteranceSegmenter` and `read_utterance` directly.

Layer 3, live speech (`emotion_tool.live`).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal, Protocol, Sequence

import numpy as np

from emotion_tool.audio import check_chunk
from emotion_tool.engine.results import EmotionReading, UtteranceReading
from emotion_tool.engine.windows import weighted_mean
from emotion_tool.live.segmenter import (
    StreamOptions,
    Utterance,
    UtteranceSegmenter,
)

__all__ = ["StreamingAnalyzer", "StreamOptions", "read_again", "read_utterance", "summarize_utterances"]


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

    With `StreamOptions(read_ahead=True)` an utterance is read as soon as its pause is `speech_pad_ms`
    old, during the rest of the pause; when the pause closes it on the same span (the same samples),
    that reading is the utterance's, so a reading is ready up to `min_silence_ms - speech_pad_ms`
    sooner with the same numbers. When speech resumes instead, the early read was wasted work: use it
    where a read is cheap (operating point "live").

    With `refine_with` (a second recognizer, at a faithful operating point such as "published" or
    "openvino+bf16"), each utterance is read twice: first by `recognizer` (a fast point such as "live"),
    returned at once with `refined=False`, then by `refine_with` on a thread of its own, returned by a
    later `poll` with the same `index` and `refined=True`; the faithful reading replaces the fast one in
    `trace`. Both carry their `operating_point`. A consumer that must act now uses whichever reading of
    an utterance it has; `flush` waits for the refinements too.

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

    def __init__(self, recognizer: _Classifier, *, options: StreamOptions = StreamOptions(), refine_with: _Classifier | None = None):
        self.recognizer = recognizer
        self.refine_with = refine_with
        self.options = options
        self._points = (_point_of(recognizer), _point_of(refine_with)) if refine_with is not None else None
        self._refine_queue: deque[UtteranceReading | Utterance | None] = deque()
        self._refining = 0  # utterances handed to the refiner and not yet replaced
        self._segmenter = UtteranceSegmenter(options)
        self._index = 0  # index of the next final reading
        self._cv = threading.Condition()
        self._queue: deque[_Item] = deque()
        self._queued = 0  # input samples waiting in the queue
        self._max_queued = None if options.max_queue_s is None else int(options.max_queue_s * options.sample_rate)
        self._enqueued = 0  # items ever queued ...
        self._done = 0  # ... and handled (or discarded by reset/close)
        self._dropped = 0  # input samples dropped by a full queue
        self._outbox: list[UtteranceReading] = []
        self._ahead: tuple[int, int, UtteranceReading] | None = None  # span and reading of the latest read-ahead
        self._trace: list[UtteranceReading] = []
        self._error: BaseException | None = None
        self._closed = False
        self._worker = threading.Thread(target=self._work, name="emotion-streaming-analyzer", daemon=True)
        self._worker.start()
        self._refiner: threading.Thread | None = None
        if refine_with is not None:
            self._refiner = threading.Thread(target=self._refine, name="emotion-streaming-refiner", daemon=True)
            self._refiner.start()

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
        seq = self._enqueue(_Item("flush", None, time.monotonic()), bounded=False)
        with self._cv:
            while self._done < seq:
                self._cv.wait(timeout=1.0)
            while self._refining and self._refiner is not None and self._refiner.is_alive():
                self._cv.wait(timeout=1.0)
        return self.poll()

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
            self._refine_queue.clear()
            self._refine_queue.append(None)
            self._cv.notify_all()
        if threading.current_thread() is not self._worker:
            self._worker.join()
        if self._refiner is not None and threading.current_thread() is not self._refiner:
            self._refiner.join()

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
        return self._segmenter.stream_s

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
            self._read(seg.push(item.samples, received_at=item.fed_at))
        elif item.kind == "flush":
            self._read(seg.flush(received_at=item.fed_at))
        elif item.kind == "gap":
            self._read(seg.skip(item.dropped, received_at=item.fed_at))
        elif item.kind == "reset":
            seg.reset()
            self._index = 0
            self._ahead = None
            with self._cv:
                self._trace = []
                self._outbox = []
                self._dropped = 0
                self._refining -= len(self._refine_queue)  # not refined now: their utterances are gone
                self._refine_queue.clear()

    def _read(self, utterances: list[Utterance]) -> None:
        for u in utterances:
            if u.ahead:  # read during the pause; kept until the utterance closes
                reading = read_utterance(self.recognizer, u, index=self._index, min_confidence=self.options.min_confidence)
                self._ahead = (u.start, u.end, reading)
                continue
            ahead = self._ahead
            if not u.interim:
                self._ahead = None
            if ahead is not None and not u.interim and ahead[:2] == (u.start, u.end):
                # The same samples were read already: the reading is ready as the pause closes it.
                reading = ahead[2].model_copy(update={"cut": u.cut, "latency_s": max(0.0, time.monotonic() - u.speech_end_at)})
            else:
                reading = read_utterance(self.recognizer, u, index=self._index, min_confidence=self.options.min_confidence)
            if self._points is not None:
                reading = reading.model_copy(update={"operating_point": self._points[0], "refined": False})
            with self._cv:
                self._outbox.append(reading)
                if not u.interim:
                    self._trace.append(reading)
                    if self.refine_with is not None:
                        self._refining += 1
                        self._refine_queue.append((u, reading))  # type: ignore[arg-type]
                        self._cv.notify_all()
            if not u.interim:
                self._index += 1

    def _refine(self) -> None:
        """The refiner thread: reads each final utterance again at the faithful point, replacing the fast reading."""
        assert self.refine_with is not None and self._points is not None
        while True:
            with self._cv:
                while not self._refine_queue:
                    self._cv.wait()
                job = self._refine_queue.popleft()
            if job is None:
                return
            utterance, fast = job  # type: ignore[misc]
            try:
                faithful = read_again(self.refine_with, utterance, fast, point=self._points[1], min_confidence=self.options.min_confidence)
            except Exception as e:  # reported by the next poll/push/flush; the fast reading stays
                with self._cv:
                    self._error = self._error or e
                    self._refining -= 1
                    self._cv.notify_all()
                continue
            with self._cv:
                for i, kept in enumerate(self._trace):
                    if kept.index == fast.index and kept is fast:
                        self._trace[i] = faithful
                        self._outbox.append(faithful)
                        break  # (a reset in between dropped the fast one: nothing to replace)
                self._refining -= 1
                self._cv.notify_all()


def _point_of(recognizer: Any) -> str | None:
    """The operating point a recognizer reads at, where it says (`EmotionRecognizer.operating_point`)."""
    name = getattr(recognizer, "operating_point", None)
    try:
        return name(trace=False) if callable(name) else None
    except TypeError:
        return None


def read_again(
    recognizer: _Classifier, utterance: Utterance, fast: UtteranceReading, *, point: str | None, min_confidence: float | None = None
) -> UtteranceReading:
    """The faithful reading of an utterance read fast before (a refinement): `recognizer`'s reading of
    the same samples, with the fast reading's index, times and cut, named `point` and `refined=True`.
    `latency_s` runs from the utterance's last voiced frame to now."""
    r = read_utterance(recognizer, utterance, index=fast.index, min_confidence=min_confidence)
    reading = r.reading.model_copy(update={"start_s": fast.start_s, "end_s": fast.end_s})
    return r.model_copy(update={
        "start_s": fast.start_s, "end_s": fast.end_s, "reading": reading, "cut": fast.cut, "operating_point": point, "refined": True,
    })  # fmt: skip


def read_utterance(recognizer: _Classifier, utterance: Utterance, *, index: int, min_confidence: float | None = None) -> UtteranceReading:
    """Reads one utterance (one window, so the same audio gives the same numbers however chunks fell),
    its times shifted into the stream; `latency_s` runs from its last voiced frame to now."""
    reading = recognizer.classify_batch([utterance.audio], min_confidence=min_confidence)[0]
    start_s, end_s = utterance.start_s, utterance.end_s
    return UtteranceReading(
        index=index,
        start_s=start_s,
        end_s=end_s,
        reading=reading.model_copy(update={"start_s": start_s, "end_s": end_s}),
        interim=utterance.interim,
        cut=utterance.cut,
        latency_s=max(0.0, time.monotonic() - utterance.speech_end_at),
    )


@dataclass
class _Item:
    """One entry of the worker's queue."""

    kind: Literal["audio", "gap", "flush", "reset", "stop"]
    samples: Any  # np.ndarray (n,) float32 at the input rate, for "audio"
    fed_at: float  # time.monotonic() when it was queued
    dropped: int = 0  # input samples lost, for "gap"


def summarize_utterances(
    trace: Sequence[UtteranceReading], *, labels: Sequence[str], min_confidence: float
) -> tuple[EmotionReading | None, dict[str, int]]:
    """The duration-weighted aggregate of final utterance readings, and the count of each label.

    Interim readings are left out. A streaming session's summary and a voice plugin's turn note both
    combine utterances this way, as a recording's summary combines its windows.
    """
    final = [u for u in trace if not u.interim]
    counts = {label: 0 for label in labels}
    for u in final:
        counts[u.reading.label] = counts.get(u.reading.label, 0) + 1
    if not final:
        return None, counts
    probs = np.array([[u.reading.probabilities[label] for label in labels] for u in final])
    dims = np.array([[u.reading.valence, u.reading.arousal, u.reading.dominance] for u in final])
    weights = [u.end_s - u.start_s for u in final]
    overall = EmotionReading.from_outputs(
        weighted_mean(probs, weights),
        weighted_mean(dims, weights),
        labels=labels,
        start_s=final[0].start_s,
        end_s=final[-1].end_s,
        min_confidence=min_confidence,
    )
    return overall, counts
