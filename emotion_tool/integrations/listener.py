"""The user's side of a voice pipeline: audio in, one reading per utterance out, off the event loop.

Framework-free core of the Pipecat and LiveKit plugins. A `TurnListener` is fed the user's audio
frames from an asyncio loop (`feed_pcm16` returns at once: the frame is converted and queued), and
one worker thread per listener cuts utterances with the engine's `UtteranceSegmenter` and reads each
with `read_utterance`, so the loop never waits on the model. Readings come back on the loop
(`on_reading`, `take_readings`).

Turns are cut in one of two ways (`PerceptionOptions.turns`):
- "segmenter": the engine's segmenter alone (silero-vad, a pause of `min_silence_ms` closes an utterance);
- "pipeline": the framework's own turn events (`turn_started` / `turn_stopped`): audio outside its
  turns is skipped but for `pre_roll_s` before each start (a VAD confirms speech late), and a stop
  closes the utterance at once; the segmenter still trims silence and drops noise inside a turn.
"auto" starts with the segmenter and follows the framework from its first turn event on.

A refinement (`refine_with`, a second recognizer at a faithful point) reads each final utterance again
on a thread of its own: the fast reading is delivered at once (`refined=False`), the faithful one later
(`refined=True`, same `index`) and takes the fast one's place in what the listener keeps, so a turn's
note uses whichever of the two is ready when the LLM must run, and names it.

Chunk contract of `feed_pcm16`: 16-bit signed little-endian PCM, channels interleaved (what Pipecat's
`InputAudioRawFrame.audio` and LiveKit's `rtc.AudioFrame.data` hold), at any rate the segmenter takes
(`MIN_SAMPLE_RATE`..`MAX_SAMPLE_RATE`); several channels are mixed down. A change of rate or channel
count mid-stream ends the stream so far and starts a new one; stream time runs on. A frame that breaks
the contract (a rate of 0 or 1 Hz, no channels, an odd byte count) is skipped and counted in
`stats.bad_frames`: it neither stops the stream nor moves its clock, and the next good frame is read.

Layer 5, the voice-framework integrations (`emotion_tool.integrations`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Literal, Protocol, Sequence

import numpy as np

from emotion_tool.audio import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE
from emotion_tool.engine.results import (
    CalibrationNote,
    EmotionReading,
    UtteranceReading,
)
from emotion_tool.live.segmenter import StreamOptions, UtteranceSegmenter
from emotion_tool.live.streaming import read_again, read_utterance

__all__ = ["TurnListener", "PerceptionOptions", "ListenerStats"]

log = logging.getLogger("emotion_tool.integrations")

TurnSource = Literal["auto", "segmenter", "pipeline"]

_JOIN_TIMEOUT_S = 30.0  # longest a close waits for the worker to finish the reading in hand
_RECENT_READINGS = 64  # final readings kept for the transcriptions that ask which one is theirs


@dataclass(frozen=True)
class PerceptionOptions:
    """How a voice-agent plugin listens to the user and tells the LLM."""

    stream: StreamOptions = StreamOptions()  # the segmenter's settings; its sample_rate is replaced by the frames' own rate
    turns: TurnSource = "auto"  # who cuts utterances: "segmenter", "pipeline" (the framework's turn events), "auto" (the framework once it sends one)
    pre_roll_s: float = 0.5  # "pipeline": audio kept before a turn start, since a VAD reports speech a few hundred ms after it began
    note: bool = True  # give the LLM a short note on how the user's turn sounded
    note_wait_s: float = 1.0  # longest the LLM is held for a reading still being computed; then it runs without a note
    note_role: str = "system"  # role of the note's message in the LLM context
    note_format: Literal["prose", "rcs"] = "prose"  # "prose": sentences with advice; "rcs": a Real-time Context Standard perception string (see `note.RCS_LEGEND`)

    def __post_init__(self) -> None:
        if not isinstance(self.stream, StreamOptions):
            raise ValueError(f"stream must be a StreamOptions, got {type(self.stream).__name__}")
        if self.turns not in ("auto", "segmenter", "pipeline"):
            raise ValueError(f"turns must be 'auto', 'segmenter' or 'pipeline', got {self.turns!r}")
        if not 0 <= self.pre_roll_s <= 5:
            raise ValueError(f"pre_roll_s must be in [0, 5] seconds, got {self.pre_roll_s}")
        if not 0 <= self.note_wait_s <= 10:
            raise ValueError(
                f"note_wait_s must be in [0, 10] seconds (it holds the reply that long at most), got {self.note_wait_s}"
            )
        if self.note_format not in ("prose", "rcs"):
            raise ValueError(f"note_format must be 'prose' or 'rcs', got {self.note_format!r}")
        if self.note_role not in ("system", "developer", "user", "assistant"):
            raise ValueError(f"note_role must be 'system', 'developer', 'user' or 'assistant', got {self.note_role!r}")


@dataclass
class ListenerStats:
    """What the listener has done so far; latency runs from the end of an utterance's speech to its reading."""

    utterances: int = 0  # final readings made
    dropped_s: float = 0.0  # seconds of input dropped because analysis fell more than max_queue_s behind
    last_latency_s: float | None = None  # latency of the latest final reading
    max_latency_s: float = 0.0  # the largest latency so far
    latencies_s: list[float] = field(default_factory=list, repr=False)  # every final reading's latency, in order
    errors: list[str] = field(default_factory=list)  # analysis errors (the pipeline goes on without those readings)
    bad_frames: int = 0  # frames skipped because they break the chunk contract (a rate of 0 Hz, no channels, ...)
    last_bad_frame: str | None = None  # what was wrong with the latest of them
    turns: str = "segmenter"  # who cuts utterances now: "segmenter", or "pipeline" (the framework's turn events)
    refined: int = 0  # with a refinement: faithful readings that replaced fast ones
    refined_latencies_s: list[float] = field(default_factory=list, repr=False)  # their latencies (end of speech to faithful reading)

    @property
    def mean_latency_s(self) -> float | None:
        return sum(self.latencies_s) / len(self.latencies_s) if self.latencies_s else None


def _frame_problem(data: Any, sample_rate: Any, channels: Any) -> str | None:
    """What makes a frame unreadable under the chunk contract, in a few words; None for a good frame."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        return f"sample_rate={sample_rate!r} Hz, outside {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE}"
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        return f"num_channels={channels!r}; a frame needs at least one channel"
    try:
        nbytes = memoryview(data).nbytes  # LiveKit hands a memoryview of int16 items, Pipecat bytes
    except TypeError:
        return f"audio of type {type(data).__name__}, not bytes of 16-bit PCM"
    if nbytes % 2:
        return f"{nbytes} bytes, not 16-bit PCM (2 bytes a sample)"
    if (nbytes // 2) % channels:
        return f"{nbytes // 2} samples do not split into {channels} interleaved channels"
    return None


class _Recognizer(Protocol):
    """What the listener needs of a recognizer (an `EmotionRecognizer`, or a wrapper around one)."""

    random_weights: bool
    min_confidence: float  # the uncertain threshold its readings use unless the stream options set one

    def classify_batch(self, waveforms: Sequence[np.ndarray], *, min_confidence: float | None = None) -> list[EmotionReading]: ...

    def operating_point(self) -> str: ...


class TurnListener:
    """Reads the user's utterances from audio frames fed on an asyncio loop; analysis runs on its own thread.

    Call `bind` from the loop before feeding (the plugins do it on their start event), and at the end
    `aclose` (or `close` outside async code: it waits for the worker where it is called).
    All other methods are called from that loop. `on_reading(reading)` runs on the loop for each
    reading, interim ones included, and `on_reading(None)` whenever the listener has caught up
    with the audio fed and no utterance is open.
    """

    def __init__(
        self,
        recognizer: _Recognizer,
        *,
        options: PerceptionOptions = PerceptionOptions(),
        on_reading: Callable[[UtteranceReading | None], None] | None = None,
        refine_with: _Recognizer | None = None,
    ):
        self.recognizer = recognizer
        self.refine_with = refine_with
        self.options = options
        self.on_reading = on_reading
        self.stats = ListenerStats()
        self.operating_point = str(recognizer.operating_point())
        self.refine_point = str(refine_with.operating_point()) if refine_with is not None else None
        self.random_weights = bool(getattr(recognizer, "random_weights", False))
        info = getattr(recognizer, "info", None)  # a wrapper without `info` has no calibration to name
        self.calibration: CalibrationNote | None = info().calibration if info is not None else None
        stream_threshold = options.stream.min_confidence
        self.min_confidence = float(recognizer.min_confidence if stream_threshold is None else stream_threshold)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: asyncio.Event | None = None
        self._untaken: list[UtteranceReading] = []  # final readings the LLM note has not used yet
        self.latest: UtteranceReading | None = None  # the latest final reading
        self._recent: deque[UtteranceReading] = deque(maxlen=_RECENT_READINGS)  # the latest final readings, in order
        self._busy = False  # loop-side view: an utterance is open or being read
        self.fed_s = 0.0  # seconds of audio fed so far (dropped ones included): stream time, as readings count it
        self._taken_at_s = 0.0  # stream time of the latest take_readings: older utterances belong to earlier turns
        self._sent = 0  # items queued (loop side) ...
        self._seen = 0  # ... and reported done by the worker
        # The worker's queue; only the queue and counters are shared, under the condition.
        self._cv = threading.Condition()
        self._queue: deque[tuple[str, Any]] = deque()
        self._queued_s = 0.0
        self._closed = False
        self._worker_state = _WorkerState(options, recognizer)
        self._handled = 0  # items the worker has handled (worker side)
        self._thread = threading.Thread(target=self._work, name="emotion-turn-listener", daemon=True)
        self._refining = 0  # loop side: fast readings whose faithful reading has not come back
        self._to_refine: list[tuple[Any, UtteranceReading]] = []  # worker side: fast readings of the item in hand
        self._refine_queue: deque[tuple[Any, UtteranceReading] | None] = deque()  # shared, under the condition
        self._refiner: threading.Thread | None = None
        if refine_with is not None:
            self._refiner = threading.Thread(target=self._refine, name="emotion-turn-refiner", daemon=True)
            self._refiner.start()
        self._thread.start()

    # --- the loop's side ------------------------------------------------------------------------------

    def bind(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Binds the listener to the running loop (readings are delivered there) and warms the model up
        on its thread, so the first utterance is not read at first-call speed."""
        self._loop = loop or asyncio.get_running_loop()
        self._changed = asyncio.Event()
        with self._cv:
            self._put(("warm", None))
            if self._refiner is not None:
                self._refine_queue.append(("warm", None))  # type: ignore[arg-type]
                self._cv.notify_all()

    def feed_pcm16(self, data: bytes | memoryview, sample_rate: int, channels: int, *, received_at: float | None = None) -> None:
        """Queues one frame of interleaved 16-bit PCM; returns at once. Beyond `max_queue_s` of waiting
        audio the frame is dropped and counted in `stats.dropped_s` (the open utterance closes at the gap).
        A frame that breaks the chunk contract is skipped and counted in `stats.bad_frames`."""
        problem = _frame_problem(data, sample_rate, channels)
        if problem is not None:
            self._skip_bad_frame(problem)
            return
        pcm = np.frombuffer(data, dtype="<i2")
        if pcm.shape[0] == 0:
            return
        mono = pcm.copy() if channels == 1 else pcm.reshape(-1, channels).astype(np.float32).mean(axis=1) / 32768.0
        seconds = mono.shape[0] / sample_rate
        self.fed_s += seconds
        at = time.monotonic() if received_at is None else received_at
        limit = self.options.stream.max_queue_s
        with self._cv:
            if limit is not None and self._queued_s and self._queued_s + seconds > limit:
                self.stats.dropped_s += seconds
                self._put(("gap", (mono.shape[0], sample_rate, at)))
                return
            self._queued_s += seconds
            self._put(("audio", (mono, sample_rate, at)))

    def _skip_bad_frame(self, problem: str) -> None:
        """Counts a frame that breaks the chunk contract; warns on the first, and when the problem changes."""
        self.stats.bad_frames += 1
        if problem != self.stats.last_bad_frame:
            log.warning("skipped an audio frame the emotion listener cannot read (%s); later frames are read", problem)
        self.stats.last_bad_frame = problem

    def turn_started(self) -> None:
        """The framework says the user began a turn (ignored with turns="segmenter")."""
        if self.options.turns != "segmenter":
            with self._cv:
                self._put(("start", time.monotonic()))

    def turn_stopped(self) -> None:
        """The framework says the user's turn ended: the open utterance closes and is read now."""
        if self.options.turns != "segmenter":
            with self._cv:
                self._put(("stop", time.monotonic()))

    def end_turn(self) -> None:
        """The framework's end of turn: the open utterance closes and is read now, whatever `turns` is."""
        with self._cv:
            self._put(("end", None))

    async def flush(self) -> None:
        """Closes the open utterance and waits until everything fed so far is read and delivered
        (with a refinement, the faithful readings too)."""
        done = self._require_loop().create_future()
        with self._cv:
            self._put(("flush", done))
        await done
        if self._refiner is not None:
            await self.wait_until(lambda: self._refining == 0 or not self._refiner.is_alive(), wait_s=_JOIN_TIMEOUT_S)

    @property
    def lag_s(self) -> float:
        """Seconds of audio fed but not analysed yet: how far analysis runs behind the stream."""
        with self._cv:
            return max(0.0, self._queued_s)

    @property
    def pending(self) -> bool:
        """Whether a reading may still come for speech already fed: an utterance is open or being read."""
        return self._busy or self._seen < self._sent

    async def take_readings(self, *, wait_s: float) -> list[UtteranceReading]:
        """This turn's final readings not taken yet, in order, waiting up to `wait_s` for one still to come.

        A turn's readings are those of utterances that end after the previous call: a reading that
        came too late for its own turn is not passed off as the next one's. The wait ends early once
        everything fed before the call is analysed and the turn has a reading, or nothing is pending
        (speech the user starts meanwhile belongs to the next turn).
        """
        since_s, self._taken_at_s = self._taken_at_s, self.fed_s
        sent_before = self._sent

        def answered() -> bool:
            caught_up = self._seen >= sent_before
            return not self.pending or caught_up and any(r.end_s > since_s for r in self._untaken)

        await self.wait_until(answered, wait_s=wait_s)
        out, self._untaken = self._untaken, []
        return [r for r in out if r.end_s > since_s]

    async def reading_of_now(self, *, since_s: float, wait_s: float) -> UtteranceReading | None:
        """The final reading of the utterance the audio fed so far ends in, waiting up to `wait_s` for it.

        What a transcription that arrives now belongs to: its speech was fed already, and its utterance
        may still be open or being read. If no utterance is open once everything fed so far is analysed,
        it is the latest one that ended after `since_s` (stream seconds; the previous transcription's
        time), so that a transcription whose speech made no utterance gets no earlier one's reading.
        None when there is none, or it is not ready within `wait_s`: never another utterance's reading.
        """
        loop = self._require_loop()
        deadline = loop.time() + wait_s
        mark: asyncio.Future[tuple[bool, int]] = loop.create_future()
        with self._cv:
            self._put(("mark", mark))  # answered once the worker has handled everything fed before it
        done, _ = await asyncio.wait({mark}, timeout=wait_s)
        if not done:
            mark.cancel()
            return None
        still_open, next_index = mark.result()
        if not still_open:
            return next((r for r in reversed(self._recent) if r.index < next_index and r.end_s > since_s), None)

        def read() -> UtteranceReading | None:
            return next((r for r in self._recent if r.index == next_index), None)

        await self.wait_until(lambda: read() is not None, wait_s=max(0.0, deadline - loop.time()))
        return read()

    async def wait_until(self, done: Callable[[], bool], *, wait_s: float) -> bool:
        """Waits up to `wait_s` for `done()` to hold, checking it whenever the worker reports; returns `done()`."""
        loop = self._require_loop()
        deadline = loop.time() + wait_s
        assert self._changed is not None
        while not done() and (left := deadline - loop.time()) > 0:
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), timeout=left)
            except asyncio.TimeoutError:
                break
        return done()

    def close(self) -> None:
        """Stops the worker and waits for it (up to 30 s); audio not read yet is discarded (`await flush()`
        first to keep it). From async code use `aclose`, which waits off the event loop."""
        if self._stop_worker():
            for thread in self._threads():
                if threading.current_thread() is not thread:
                    thread.join(timeout=_JOIN_TIMEOUT_S)

    async def aclose(self) -> None:
        """`close` for async code: the loop runs on while the worker finishes the reading in hand."""
        if self._stop_worker():
            for thread in self._threads():
                await asyncio.to_thread(thread.join, _JOIN_TIMEOUT_S)

    def _threads(self) -> list[threading.Thread]:
        return [self._thread] + ([self._refiner] if self._refiner is not None else [])

    def _stop_worker(self) -> bool:
        """Tells the worker to stop after the item in hand; False if it was told already."""
        with self._cv:
            if self._closed:
                return False
            self._closed = True
            self._queue.clear()
            self._queue.append(("stop-worker", None))
            self._refine_queue.clear()
            self._refine_queue.append(None)
            self._cv.notify_all()
        return True

    def _require_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("TurnListener.bind() must be called from the event loop before use")
        return self._loop

    def _put(self, item: tuple[str, Any]) -> None:
        """Queues an item (caller holds the lock)."""
        if self._closed:
            raise RuntimeError("this TurnListener is closed; create a new one")
        self._queue.append(item)
        self._sent += 1
        self._cv.notify_all()

    def _deliver(self, readings: list[UtteranceReading], busy: bool, seen: int, error: str | None, following: bool) -> None:
        """Runs on the loop: takes the worker's news."""
        self._busy, self._seen = busy, seen
        self.stats.turns = "pipeline" if following else "segmenter"
        if error is not None:
            self.stats.errors.append(error)
            log.warning("emotion analysis failed; the pipeline goes on without this reading: %s", error)
        for r in readings:
            if not r.interim:
                if self._refiner is not None:
                    self._refining += 1
                self.stats.utterances += 1
                self.stats.last_latency_s = r.latency_s
                self.stats.max_latency_s = max(self.stats.max_latency_s, r.latency_s)
                self.stats.latencies_s.append(r.latency_s)
                self._untaken.append(r)
                self._recent.append(r)
                self.latest = r
            if self.on_reading is not None:
                self.on_reading(r)
        if self.on_reading is not None and not self.pending:
            self.on_reading(None)
        if self._changed is not None:
            self._changed.set()

    def _deliver_refined(self, faithful: UtteranceReading | None, error: str | None) -> None:
        """Runs on the loop: a faithful reading takes its fast reading's place (or the refinement failed)."""
        self._refining = max(0, self._refining - 1)
        if error is not None:
            self.stats.errors.append(error)
            log.warning("the faithful reading failed; the fast reading stays: %s", error)
        if faithful is not None:
            self.stats.refined += 1
            self.stats.refined_latencies_s.append(faithful.latency_s)
            for kept in (self._untaken, self._recent):
                for i, r in enumerate(kept):
                    if r.index == faithful.index:
                        kept[i] = faithful
            if self.latest is not None and self.latest.index == faithful.index:
                self.latest = faithful
            if self.on_reading is not None:
                self.on_reading(faithful)
        if self._changed is not None:
            self._changed.set()

    # --- the worker's side ------------------------------------------------------------------------------

    def _work(self) -> None:
        state = self._worker_state
        while True:
            with self._cv:
                while not self._queue:
                    self._cv.wait()
                kind, payload = self._queue.popleft()
                if kind == "audio":
                    self._queued_s -= payload[0].shape[0] / payload[1]
            if kind == "stop-worker":
                return
            readings: list[UtteranceReading] = []
            error = None
            try:
                state.reading = lambda u: readings.append(self._read(u))
                state.handle(kind, payload)
            except Exception as e:  # reported on the loop; the stream goes on
                error = f"{type(e).__name__}: {e}"
            self._handled += 1
            self._post(self._deliver, readings, state.speaking, self._handled, error, state.following)
            if self._to_refine:  # after the post: the loop takes in the fast readings before any faithful one
                with self._cv:
                    self._refine_queue.extend(self._to_refine)
                    self._cv.notify_all()
                self._to_refine = []
            if kind == "flush":
                self._post(lambda fut: fut.done() or fut.set_result(None), payload)
            elif kind == "mark":  # after the readings above: an utterance open now, and the next final reading's index
                self._post(lambda fut, answer: fut.done() or fut.set_result(answer), payload, (state.speaking, state.index))

    def _read(self, utterance: Any) -> UtteranceReading:
        state = self._worker_state
        r = self._shifted(read_utterance(self.recognizer, utterance, index=state.index, min_confidence=self.options.stream.min_confidence))
        if not utterance.interim:
            state.index += 1
        if self.refine_with is not None:
            r = r.model_copy(update={"operating_point": self.operating_point, "refined": False})
            if not utterance.interim:
                self._to_refine.append((utterance, r))  # handed to the refiner once the fast reading is posted
        return r

    def _shifted(self, r: UtteranceReading) -> UtteranceReading:
        """`r` with its times moved by the earlier streams' length (after a change of rate)."""
        offset = self._worker_state.offset_s
        if not offset:
            return r
        start_s, end_s = r.start_s + offset, r.end_s + offset
        return r.model_copy(update={"start_s": start_s, "end_s": end_s, "reading": r.reading.model_copy(update={"start_s": start_s, "end_s": end_s})})

    def _refine(self) -> None:
        """The refiner thread: reads each final utterance again at the faithful point."""
        assert self.refine_with is not None
        while True:
            with self._cv:
                while not self._refine_queue:
                    self._cv.wait()
                job = self._refine_queue.popleft()
            if job is None:
                return
            utterance, fast = job
            if utterance == "warm":
                try:
                    _WorkerState(self.options, self.refine_with).warm()
                except Exception as e:  # the first refinement will report it
                    log.warning("warming the faithful model up failed: %s", e)
                continue
            try:
                faithful = read_again(self.refine_with, utterance, fast, point=self.refine_point, min_confidence=self.options.stream.min_confidence)
            except Exception as e:  # reported on the loop; the fast reading stays
                self._post(self._deliver_refined, None, f"{type(e).__name__}: {e}")
                continue
            self._post(self._deliver_refined, faithful, None)

    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop closed meanwhile: nobody is left to tell
            pass


class _WorkerState:
    """The worker thread's state: the segmenter of the current stream and who cuts turns."""

    def __init__(self, options: PerceptionOptions, recognizer: Any):
        self.options = options
        self.recognizer = recognizer
        self.seg: UtteranceSegmenter | None = None
        self.rate = 0
        self.offset_s = 0.0  # stream time of earlier streams (before a change of rate)
        self.index = 0  # index of the next final reading
        self.following = options.turns == "pipeline"  # whether the framework's turn events cut utterances
        self.in_turn = False
        self.pre_roll: deque[np.ndarray] = deque()
        self.pre_roll_n = 0
        self.reading: Callable[[Any], None] = lambda u: None

    @property
    def speaking(self) -> bool:
        return self.seg is not None and self.seg.speaking

    def warm(self) -> None:
        """One reading of a second of quiet noise, thrown away (first calls allocate and pick kernels)."""
        noise = np.random.default_rng(0).normal(0, 1e-3, 16000).astype(np.float32)
        self.recognizer.classify_batch([noise], min_confidence=self.options.stream.min_confidence)

    def handle(self, kind: str, payload: Any) -> None:
        if kind == "warm":
            self.warm()
        elif kind == "audio":
            samples, rate, at = payload
            self._ensure(rate, at)
            assert self.seg is not None
            if self.following and not self.in_turn:
                self._keep_pre_roll(samples, at)
            else:
                self._read_all(self.seg.push(samples, received_at=at))
        elif kind == "gap":
            n, rate, at = payload
            self._ensure(rate, at)
            assert self.seg is not None
            self._drop_pre_roll(at)
            self._read_all(self.seg.skip(n, received_at=at))
        elif kind == "start":
            self.following = True
            if not self.in_turn and self.seg is not None:
                self.in_turn = True
                if self.pre_roll:
                    held = np.concatenate([p.astype(np.float32) / 32768.0 if p.dtype == np.int16 else p for p in self.pre_roll])
                    self.pre_roll.clear()
                    self.pre_roll_n = 0
                    self._read_all(self.seg.push(held, received_at=payload))
            self.in_turn = True
        elif kind == "stop":
            self.following = True
            if self.seg is not None:
                self._read_all(self.seg.flush(received_at=payload))
            self.in_turn = False
        elif kind in ("flush", "end"):
            if self.seg is not None:
                self._read_all(self.seg.flush())

    def _ensure(self, rate: int, at: float) -> None:
        if self.seg is not None and rate == self.rate:
            return
        if self.seg is not None:  # a new rate: the stream so far ends here
            self._read_all(self.seg.flush(received_at=at))
            self.offset_s += self.seg.stream_s
            self.pre_roll.clear()
            self.pre_roll_n = 0
        self.seg = UtteranceSegmenter(replace(self.options.stream, sample_rate=rate))
        self.rate = rate

    def _keep_pre_roll(self, samples: np.ndarray, at: float) -> None:
        self.pre_roll.append(samples)
        self.pre_roll_n += samples.shape[0]
        keep = int(self.options.pre_roll_s * self.rate)
        if self.pre_roll_n > 2 * keep + self.rate // 10:  # skip in batches, not frame by frame
            excess = 0
            while self.pre_roll and self.pre_roll_n - self.pre_roll[0].shape[0] >= keep:
                n = self.pre_roll.popleft().shape[0]
                self.pre_roll_n -= n
                excess += n
            assert self.seg is not None
            self._read_all(self.seg.skip(excess, received_at=at))

    def _drop_pre_roll(self, at: float) -> None:
        if self.pre_roll_n and self.seg is not None:
            n, self.pre_roll_n = self.pre_roll_n, 0
            self.pre_roll.clear()
            self._read_all(self.seg.skip(n, received_at=at))

    def _read_all(self, utterances: list[Any]) -> None:
        for u in utterances:
            if not u.ahead:  # a read-ahead copy (StreamOptions.read_ahead) is not closed yet: turns wait for the close
                self.reading(u)
