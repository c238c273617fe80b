"""A fast reading now, the faithful one after: `StreamingAnalyzer(fast, refine_with=faithful)`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from emotion_tool import EmotionRecognizer
from emotion_tool.live.streaming import StreamingAnalyzer



@pytest.fixture(scope="module")
def fast(tiny_checkpoint):
    return EmotionRecognizer.from_pretrained(tiny_checkpoint, device="cpu", operating_point="trimmed")


def _run(recognizer, wav, **kw):
    with StreamingAnalyzer(recognizer, **kw) as an:
        out = []
        for i in range(0, len(wav), 1600):
            out += an.push(wav[i : i + 1600])
        out += an.flush()
        return out, an.trace


def test_each_utterance_is_read_fast_then_faithfully_and_the_faithful_reading_is_kept(recognizer, fast, sentences):
    wav, bounds = sentences
    readings, trace = _run(fast, wav, refine_with=recognizer)
    firsts = [r for r in readings if r.refined is False]
    seconds = [r for r in readings if r.refined is True]
    assert [r.index for r in firsts] == [r.index for r in seconds] == list(range(len(bounds)))
    assert {r.operating_point for r in firsts} == {"trimmed"} and {r.operating_point for r in seconds} == {"published"}
    for f in firsts:  # the fast one of each utterance came first
        assert readings.index(f) < readings.index(next(s for s in seconds if s.index == f.index))
    assert [r.refined for r in trace] == [True] * len(bounds)  # the trace keeps the faithful readings
    # The faithful readings are exactly what the faithful point alone reads, the fast ones what the fast point reads.
    alone, _ = _run(recognizer, wav)
    quick, _ = _run(fast, wav)
    for kept, ref in zip(trace, alone):
        assert (kept.start_s, kept.end_s) == (ref.start_s, ref.end_s)
        assert np.allclose(list(kept.reading.probabilities.values()), list(ref.reading.probabilities.values()), atol=1e-6)
    for f, ref in zip(firsts, quick):
        assert np.allclose(list(f.reading.probabilities.values()), list(ref.reading.probabilities.values()), atol=1e-6)


def test_without_a_refinement_readings_are_as_before(recognizer, sentences):
    wav, _ = sentences
    readings, _ = _run(recognizer, wav)
    dumped = json.loads(readings[0].model_dump_json())
    assert "operating_point" not in dumped and "refined" not in dumped


def test_a_failing_refinement_is_reported_and_the_fast_reading_stays(fast, sentences):
    class Broken:
        def classify_batch(self, waveforms, *, min_confidence=None):
            raise RuntimeError("the faithful model ran out of memory")

    wav, _ = sentences
    with StreamingAnalyzer(fast, refine_with=Broken()) as an:
        for i in range(0, len(wav), 1600):
            an.feed(wav[i : i + 1600])
        with pytest.raises(RuntimeError, match="ran out of memory"):
            an.flush()
        assert an.trace and all(r.refined is False for r in an.trace)
