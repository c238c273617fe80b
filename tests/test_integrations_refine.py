"""A refinement in the voice plugins' core: the turn listener reads fast, then faithfully, and the note says which."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import soundfile as sf

from emotion_tool import EmotionRecognizer
from emotion_tool.integrations.listener import PerceptionOptions, TurnListener
from emotion_tool.integrations.note import rcs_perception, turn_note, turn_reading, write_note
from helpers import HeldRecognizer


def pcm16(wav: np.ndarray) -> bytes:
    return np.round(np.clip(wav, -1, 1) * 32767).astype("<i2").tobytes()


@pytest.fixture(scope="module")
def fast(tiny_checkpoint):
    return EmotionRecognizer.from_pretrained(tiny_checkpoint, device="cpu", operating_point="trimmed")


async def _feed(listener: TurnListener, wav: np.ndarray, sr: int) -> None:
    step = sr // 50
    for i in range(0, len(wav), step):
        listener.feed_pcm16(pcm16(wav[i : i + step]), sr, 1)


def test_the_turn_takes_the_fast_reading_while_the_faithful_one_is_not_ready_then_the_faithful_replaces_it(
    fast, recognizer, sentences_wav
):
    wav, sr = sf.read(sentences_wav[0], dtype="float32")
    faithful = HeldRecognizer(recognizer)
    delivered = []

    async def main():
        listener = TurnListener(fast, refine_with=faithful, on_reading=lambda r: r is not None and delivered.append(r))
        listener.bind()
        await _feed(listener, wav, sr)
        listener.end_turn()
        taken = await listener.take_readings(wait_s=60.0)  # the LLM must run now: the faithful readings are held
        faithful.go.set()
        await listener.flush()  # waits for the faithful readings too
        listener.close()
        return listener, taken

    try:
        listener, taken = asyncio.run(main())
    finally:
        faithful.go.set()
    n = len(sentences_wav[1])
    assert len(taken) == n and {(r.operating_point, r.refined) for r in taken} == {("trimmed", False)}
    note = turn_note(turn_reading(taken, min_confidence=0.5), random_weights=True, utterances=n)
    assert "fast first reading (operating point trimmed)" in note
    # Both readings went out, the fast one first; the faithful one took its place in what the listener keeps.
    firsts = [r for r in delivered if r.refined is False]
    seconds = [r for r in delivered if r.refined is True]
    assert [r.index for r in firsts] == [r.index for r in seconds] == list(range(n))
    assert all(delivered.index(f) < delivered.index(s) for f, s in zip(firsts, seconds))
    assert {r.operating_point for r in seconds} == {"published"}
    assert list(listener._recent) == seconds and listener.latest == seconds[-1]
    assert listener.stats.refined == n and len(listener.stats.refined_latencies_s) == n
    assert listener.stats.utterances == n and listener.stats.errors == []
    # The faithful readings are what the faithful recognizer alone reads, over the same spans.
    for f, s in zip(firsts, seconds):
        assert (f.start_s, f.end_s) == (s.start_s, s.end_s)

    async def alone():
        plain = TurnListener(recognizer)
        plain.bind()
        await _feed(plain, wav, sr)
        await plain.flush()
        plain.close()
        return list(plain._recent)

    for s, ref in zip(seconds, asyncio.run(alone())):
        assert np.allclose(list(s.reading.probabilities.values()), list(ref.reading.probabilities.values()), atol=1e-6)


def test_a_turn_whose_faithful_reading_is_ready_uses_it_and_says_so(fast, recognizer, speech_wav):
    wav, sr = sf.read(speech_wav, dtype="float32")

    async def main():
        listener = TurnListener(fast, refine_with=recognizer, options=PerceptionOptions(note_format="rcs"))
        listener.bind()
        await _feed(listener, wav, sr)
        await listener.flush()  # the faithful reading is in before the LLM runs
        taken = await listener.take_readings(wait_s=5.0)
        listener.close()
        return taken

    taken = asyncio.run(main())
    assert len(taken) == 1 and taken[0].refined is True and taken[0].operating_point == "published"
    reading = turn_reading(taken, min_confidence=0.5)
    assert "faithful reading (operating point published)" in turn_note(reading)
    rcs = write_note(reading, format="rcs", operating_point="trimmed")  # the listener's fast point is not what it says
    assert "point=published" in rcs and "reading=faithful" in rcs


def test_a_turn_mixing_fast_and_faithful_readings_names_both(recognizer, speech_wav):
    wav, sr = sf.read(speech_wav, dtype="float32")
    one = recognizer.classify_batch([wav])[0]
    from emotion_tool.engine.results import UtteranceReading

    def u(index, point, refined):
        return UtteranceReading(index=index, start_s=index, end_s=index + 1.0, reading=one, latency_s=0.1, operating_point=point, refined=refined)

    reading = turn_reading([u(0, "published", True), u(1, "trimmed", False)], min_confidence=0.5)
    assert reading.operating_point == "published and trimmed" and reading.refined is False
    assert "reading=fast" in rcs_perception(reading, operating_point=reading.operating_point)
    plain = turn_reading([u(0, None, None), u(1, None, None)], min_confidence=0.5)
    assert plain.operating_point is None and plain.refined is None
    assert "reading=" not in rcs_perception(plain, operating_point="published")
    assert "fast first reading" not in turn_note(plain) and "faithful reading" not in turn_note(plain)


def test_a_failing_refinement_keeps_the_fast_reading_and_is_counted(fast, speech_wav):
    class Broken:
        random_weights = True
        min_confidence = 0.5

        def operating_point(self):
            return "published"

        def classify_batch(self, waveforms, *, min_confidence=None):
            raise RuntimeError("the faithful model ran out of memory")

    wav, sr = sf.read(speech_wav, dtype="float32")

    async def main():
        listener = TurnListener(fast, refine_with=Broken())
        listener.bind()
        await _feed(listener, wav, sr)
        await listener.flush()
        taken = await listener.take_readings(wait_s=1.0)
        await listener.aclose()
        return listener, taken

    listener, taken = asyncio.run(main())
    assert len(taken) == 1 and taken[0].refined is False
    assert listener.stats.refined == 0 and any("ran out of memory" in e for e in listener.stats.errors)
    assert not listener._refiner.is_alive() and not listener._thread.is_alive()
