"""The streaming analyzer on real espeak-ng speech with the tiny random checkpoint."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import soundfile as sf
import soxr

from emotion_tool import AudioError
from emotion_tool.engine.results import UtteranceReading
from emotion_tool.live.streaming import StreamingAnalyzer, StreamOptions

SR = 16000
TOLERANCE_S = 0.3  # utterance boundaries vs where espeak-ng's voice sounds


class SlowRecognizer:
    """Wraps a recognizer; every read takes `delay_s` longer, as a big model on a slow device would."""

    def __init__(self, inner, delay_s: float, gate: threading.Event | None = None):
        self.inner = inner
        self.delay_s = delay_s
        self.gate = gate  # when given, every read also waits until it is set: the test decides when the model is done
        self.busy = threading.Event()
        self.calls = 0

    def classify_batch(self, waveforms, *, min_confidence=None):
        self.busy.set()
        self.calls += 1
        try:
            time.sleep(self.delay_s)
            if self.gate is not None:
                self.gate.wait()
            return self.inner.classify_batch(waveforms, min_confidence=min_confidence)
        finally:
            self.busy.clear()


class FailingRecognizer:
    def classify_batch(self, waveforms, *, min_confidence=None):
        raise RuntimeError("out of memory on the device")


def stream(recognizer, wav: np.ndarray, chunk: int, **options) -> tuple[list[UtteranceReading], StreamingAnalyzer]:
    """Feeds `wav` in chunks of `chunk` samples without waiting, then flushes; returns every reading."""
    an = StreamingAnalyzer(recognizer, options=StreamOptions(**options))
    for i in range(0, len(wav), chunk):
        an.feed(wav[i : i + chunk])
    out = an.flush()
    an.close()
    return out, an


@pytest.fixture(scope="module")
def by_chunk(recognizer, sentences) -> dict[int, list[UtteranceReading]]:
    """Final readings of the three-sentence recording fed in 20 ms, 100 ms and 1 s chunks."""
    wav, _ = sentences
    return {ms: stream(recognizer, wav, SR * ms // 1000)[0] for ms in (20, 100, 1000)}


def assert_same(a: list[UtteranceReading], b: list[UtteranceReading], atol: float = 1e-5) -> None:
    assert [(u.index, u.interim, u.cut) for u in a] == [(u.index, u.interim, u.cut) for u in b]
    for u, v in zip(a, b):
        assert u.start_s == pytest.approx(v.start_s, abs=atol) and u.end_s == pytest.approx(v.end_s, abs=atol)
        assert u.reading.label == v.reading.label
        for key in u.reading.probabilities:
            assert u.reading.probabilities[key] == pytest.approx(v.reading.probabilities[key], abs=atol)
        for dim in ("valence", "arousal", "dominance"):
            assert getattr(u.reading, dim) == pytest.approx(getattr(v.reading, dim), abs=atol)


def assert_boundaries(readings: list[UtteranceReading], bounds: list[tuple[float, float]]) -> None:
    assert len(readings) == len(bounds), [(u.start_s, u.end_s) for u in readings]
    for u, (start, end) in zip(readings, bounds):
        assert abs(u.start_s - start) <= TOLERANCE_S, (u.start_s, start)
        assert abs(u.end_s - end) <= TOLERANCE_S, (u.end_s, end)


@pytest.mark.parametrize("ms", [20, 100, 1000])
def test_one_reading_per_sentence_at_its_boundaries(by_chunk, sentences, ms):
    _, bounds = sentences
    readings = by_chunk[ms]
    assert_boundaries(readings, bounds)
    assert [u.index for u in readings] == [0, 1, 2]
    for u in readings:
        assert not u.interim and not u.cut and u.latency_s >= 0
        # The reading carries the same stream times as its utterance.
        assert (u.reading.start_s, u.reading.end_s) == (u.start_s, u.end_s)
        assert sum(u.reading.probabilities.values()) == pytest.approx(1.0, abs=1e-4)


def test_same_readings_whatever_the_chunk_size(by_chunk):
    assert_same(by_chunk[20], by_chunk[100])
    assert_same(by_chunk[20], by_chunk[1000])


def test_readings_are_those_of_the_utterance_audio(recognizer, by_chunk, sentences):
    wav, _ = sentences
    direct = recognizer.classify_batch([wav[round(u.start_s * SR) : round(u.end_s * SR)] for u in by_chunk[100]])
    for d, u in zip(direct, by_chunk[100]):  # a batch of 3 rounds a little differently from batches of 1
        assert d.probabilities == pytest.approx(u.reading.probabilities, abs=1e-4)


def test_int16_chunks_read_like_float32(recognizer, by_chunk, sentences_wav):
    pcm, _ = sf.read(sentences_wav[0], dtype="int16")
    readings, _ = stream(recognizer, pcm, 1600)
    assert_same(readings, by_chunk[100])


def test_push_returns_each_reading_once_its_pause_is_heard(recognizer, sentences):
    wav, bounds = sentences
    closed_by: dict[int, float] = {}
    with StreamingAnalyzer(recognizer) as an:
        for i in range(0, len(wav), 1600):
            for u in an.push(wav[i : i + 1600]):
                closed_by[u.index] = (i + 1600) / SR
        assert an.flush() == [] and an.poll() == []
        assert len(an.trace) == 3
    min_silence_s = StreamOptions().vad.min_silence_ms / 1000
    for index, (_, end) in enumerate(bounds):
        # Closed by the chunk that completes the pause, not at the end of the stream.
        assert end + min_silence_s - TOLERANCE_S <= closed_by[index] <= end + min_silence_s + TOLERANCE_S


def test_flush_closes_the_open_utterance(recognizer, sentences):
    wav, bounds = sentences
    end = int((bounds[0][1] + 0.1) * SR)  # the first sentence, then only 0.1 s of its pause
    with StreamingAnalyzer(recognizer) as an:
        assert an.push(wav[:end]) == []
        assert an.speaking
        readings = an.flush()
        assert not an.speaking
        assert len(readings) == 1 and an.trace == readings
        assert abs(readings[0].start_s - bounds[0][0]) <= TOLERANCE_S
        assert bounds[0][1] <= readings[0].end_s <= end / SR
        # Feeding goes on after a flush; stream time continues.
        more = an.push(wav[end : int((bounds[1][1] + 1.0) * SR)])
        assert [u.index for u in more] == [1]
        assert abs(more[0].start_s - bounds[1][0]) <= TOLERANCE_S


def test_stream_goes_on_after_a_flush_in_mid_speech(recognizer, by_chunk, sentences):
    wav, bounds = sentences
    middle = int((bounds[0][0] + 1.0) * SR) + 100  # inside the first sentence, off the 32-ms frame grid
    with StreamingAnalyzer(recognizer) as an:
        first = an.push(wav[:middle]) + an.flush()
        assert [(u.index, u.end_s) for u in first] == [(0, middle / SR)]
        an.feed(wav[middle : middle + 50])  # too little to complete the frame the flush left open
        for i in range(middle + 50, len(wav), 320):
            an.feed(wav[i : i + 320])
        rest = an.flush()
    # The rest of the first sentence is an utterance of its own, starting where the flush ended it ...
    assert rest[0].start_s >= middle / SR and abs(rest[0].end_s - bounds[0][1]) <= TOLERANCE_S
    # ... and the later sentences read exactly as in an uninterrupted stream.
    assert_same([u.model_copy(update={"index": u.index - 1}) for u in rest[1:]], by_chunk[20][1:])


def test_reset_starts_over(recognizer, by_chunk, sentences):
    wav, _ = sentences
    with StreamingAnalyzer(recognizer) as an:
        an.push(wav[: 6 * SR])
        assert an.trace and an.stream_s == pytest.approx(6.0, abs=1 / SR)
        an.feed(wav[6 * SR : 8 * SR])
        an.reset()
        assert an.trace == [] and an.poll() == [] and an.stream_s == 0.0 and not an.speaking
        for i in range(0, len(wav), 1600):
            an.feed(wav[i : i + 1600])
        assert_same(an.flush(), by_chunk[100])


def test_long_speech_is_cut_at_max_utterance_s_and_goes_on(recognizer, sentences):
    wav, bounds = sentences
    readings, _ = stream(recognizer, wav, 1600, max_utterance_s=1.5)
    assert any(u.cut for u in readings)
    assert all(u.end_s - u.start_s <= 1.5 + 1e-9 for u in readings)
    assert [u.index for u in readings] == list(range(len(readings)))
    for u, v in zip(readings, readings[1:] + [None]):
        if u.cut:  # the speech goes on in the next utterance without a gap, unless it ended right at the cut
            assert (v is not None and v.start_s == u.end_s) or any(abs(u.end_s - end) <= TOLERANCE_S for _, end in bounds)
    # Every sentence is covered from start to end by its pieces.
    for start, end in bounds:
        pieces = [u for u in readings if u.end_s > start and u.start_s < end]
        assert len(pieces) >= 2
        assert pieces[0].start_s <= start + TOLERANCE_S and pieces[-1].end_s >= end - TOLERANCE_S


def test_interim_readings_of_an_utterance_in_progress(recognizer, sentences):
    wav, _ = sentences
    readings, an = stream(recognizer, wav, 1600, interim_every_s=1.0)
    finals = [u for u in readings if not u.interim]
    assert [u.index for u in finals] == [0, 1, 2] and an.trace == finals
    first = [u for u in readings if u.index == 0]
    assert len(first) >= 3 and all(u.interim for u in first[:-1]) and not first[-1].interim
    # Interim readings cover the utterance so far, one more second each time.
    assert all(u.start_s == first[-1].start_s for u in first)
    lengths = [u.end_s - u.start_s for u in first[:-1]]
    assert lengths == pytest.approx([1.0 * (k + 1) for k in range(len(lengths))], abs=0.04)


@pytest.mark.parametrize("rate", [8000, 44100, 48000])
def test_other_input_rates_are_resampled(recognizer, sentences, rate):
    wav, bounds = sentences
    resampled = soxr.resample(wav, SR, rate, quality="HQ").astype(np.float32)
    readings, an = stream(recognizer, resampled, rate // 10, sample_rate=rate)
    assert_boundaries(readings, bounds)
    assert an.stream_s == pytest.approx(len(wav) / SR, abs=0.01)


def test_feed_does_not_block_while_the_model_is_slow(recognizer, sentences, by_chunk):
    wav, _ = sentences
    gate = threading.Event()  # the model stays busy until the whole stream is fed
    slow = SlowRecognizer(recognizer, delay_s=0.2, gate=gate)
    with StreamingAnalyzer(slow, options=StreamOptions(max_queue_s=None)) as an:
        split = int(5.0 * SR)  # the first sentence and its closing pause
        for i in range(0, split, 320):
            an.feed(wav[i : i + 320])
        assert slow.busy.wait(timeout=60.0), "the first utterance was never read"
        feeder = threading.Thread(target=lambda: [an.feed(wav[i : i + 320]) for i in range(split, len(wav), 320)])
        feeder.start()
        feeder.join(timeout=120.0)  # a deadlock guard, not a speed limit: feed must not wait for the model
        stuck = feeder.is_alive()
        assert slow.busy.is_set() and slow.calls == 1, "the model was not held while the rest was fed"
        gate.set()
        assert not stuck, "feed() waited for the busy model"
        readings = an.flush()
        assert an.dropped_s == 0.0
    assert_same(readings, by_chunk[20])
    assert all(u.latency_s >= slow.delay_s for u in readings)


def test_a_bounded_queue_reports_what_it_drops(recognizer, sentences):
    wav, _ = sentences
    slow = SlowRecognizer(recognizer, delay_s=0.5)
    with StreamingAnalyzer(slow, options=StreamOptions(max_queue_s=1.0)) as an:
        for i in range(0, len(wav), 1600):  # 11.5 s at once: far faster than the worker reads
            an.feed(wav[i : i + 1600])
        readings = an.flush()
        assert 0.0 < an.dropped_s < len(wav) / SR
        # Stream time runs on across the gap: times still match the input's clock.
        assert an.stream_s == pytest.approx(len(wav) / SR, abs=0.01)
        assert all(0.0 <= u.start_s < u.end_s <= len(wav) / SR for u in readings)


def test_bad_chunks_raise_a_clear_audio_error(recognizer, sentences):
    wav, _ = sentences
    with StreamingAnalyzer(recognizer) as an:
        nan = wav[:1600].copy()
        nan[10] = np.nan
        with pytest.raises(AudioError, match="1 NaN or infinite") as e:
            an.feed(nan)
        assert e.value.problem == "non_finite"
        with pytest.raises(AudioError, match=r"shape \(1600, 2\).*channels=1"):
            an.feed(np.zeros((1600, 2), dtype=np.float32))
        with pytest.raises(AudioError, match="dtype int32"):
            an.feed(np.zeros(1600, dtype=np.int32))
        with pytest.raises(AudioError, match="got list"):
            an.feed([0.0] * 1600)
        # Nothing bad got in: the stream is still clean and working.
        an.feed(np.zeros((1600, 1), dtype=np.float32))
        an.feed(np.zeros(0, dtype=np.float32))
        assert an.push(wav[: 5 * SR]) != []
        assert an.stream_s == pytest.approx(5.1, abs=1 / SR)


def test_worker_errors_reach_the_caller(sentences):
    wav, _ = sentences
    with StreamingAnalyzer(FailingRecognizer()) as an:
        an.feed(wav[: 5 * SR])
        with pytest.raises(RuntimeError, match="streaming analysis failed: out of memory"):
            an.flush()
        assert an.poll() == []  # reported once


def test_closed_analyzer_refuses_audio(recognizer):
    an = StreamingAnalyzer(recognizer)
    an.close()
    an.close()
    with pytest.raises(RuntimeError, match="closed"):
        an.feed(np.zeros(160, dtype=np.float32))


@pytest.mark.parametrize(
    "options, match",
    [
        (dict(max_utterance_s=31), r"max_utterance_s must be in \[1, 30\]"),
        (dict(sample_rate=100), "not a usable rate"),
        (dict(interim_every_s=0), "interim_every_s"),
        (dict(vad={"threshold": 0.5}), "vad must be a VadOptions"),
        (dict(max_queue_s=-1), "max_queue_s"),
    ],
)
def test_options_are_checked(options, match):
    with pytest.raises(ValueError, match=match):
        StreamOptions(**options)


def test_vad_options_are_checked_once_for_files_and_streams():
    from emotion_tool.audio.vad import VadOptions

    with pytest.raises(ValueError, match="threshold"):
        VadOptions(threshold=1.5)
    with pytest.raises(ValueError, match="min_silence_ms must be positive"):
        VadOptions(min_silence_ms=0)


def test_read_ahead_gives_the_same_readings_read_once_during_the_pause(recognizer, by_chunk, sentences):
    wav, _ = sentences
    counting = SlowRecognizer(recognizer, delay_s=0.0)
    readings, _ = stream(counting, wav, 1600, read_ahead=True)
    assert_same(readings, by_chunk[100], atol=0)  # the same samples, read once: the very same numbers
    # Every pause here outlasts min_silence_ms: each utterance is read once, ahead, and never again.
    assert counting.calls == len(readings) == 3


def test_read_ahead_of_a_pause_that_speech_ends_is_not_the_reading(recognizer, sentences):
    wav, bounds = sentences
    (s0, e0), (s1, e1) = bounds[:2]
    joined = np.concatenate([wav[: int(e0 * SR)], np.zeros(int(0.25 * SR), np.float32), wav[int(s1 * SR) : int(e1 * SR) + SR]])
    plain, _ = stream(recognizer, joined, 1600)
    counting = SlowRecognizer(recognizer, delay_s=0.0)
    ahead, _ = stream(counting, joined, 1600, read_ahead=True)
    assert len(plain) == 1
    assert_same(ahead, plain, atol=0)  # the early read of the short pause was dropped, not reported
    assert counting.calls == 2  # that wasted read, and the one of the whole utterance
