"""The framework-free core of the voice plugins: the turn listener, its options and the LLM note."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import soundfile as sf

from emotion_tool.science.empathy import describe_levels, reply_advice
from emotion_tool.integrations.listener import PerceptionOptions, TurnListener
from emotion_tool.integrations.note import NOTE_PREFIX, is_turn_note, turn_note
from emotion_tool.engine.results import EmotionReading, UtteranceReading
from emotion_tool.live.segmenter import StreamOptions
from helpers import HeldRecognizer


def pcm16(wav: np.ndarray) -> bytes:
    return np.round(np.clip(wav, -1, 1) * 32767).astype("<i2").tobytes()


def save_test_calibration(recognizer, path):
    """A calibration.json for `recognizer` (temperature 0.5), as `emotion-tool calibrate` writes one."""
    from emotion_tool.science.calibration import CalibrationOptions, FittedOn, fit_calibration

    k = len(recognizer.labels)
    fitted = fit_calibration(
        np.zeros((2, k)), [0, 1], label_names=recognizer.labels, model_id=recognizer.model_id,
        operating_point=recognizer.operating_point(), random_weights=recognizer.random_weights,
        options=CalibrationOptions(target_precision=None),
        fitted_on=FittedOn(manifest="dev.csv", sha256="0" * 64, items=2, segments=2, protocols=["utterances"], per_class={}),
    )  # fmt: skip
    return fitted.model_copy(update={"temperature": 0.5}).save(path)


def test_audio_beyond_max_queue_is_dropped_and_reported(recognizer, sentences_wav):
    wav, sr = sf.read(sentences_wav[0], dtype="float32")
    held = HeldRecognizer(recognizer)
    options = PerceptionOptions(stream=StreamOptions(max_queue_s=1.0))

    async def main():
        listener = TurnListener(held, options=options)
        listener.bind()  # its warm-up reading now waits: the worker is stuck, the queue fills
        step = sr // 50
        for i in range(0, len(wav), step):
            listener.feed_pcm16(pcm16(wav[i : i + step]), sr, 1)
        dropped = listener.stats.dropped_s
        held.go.set()
        await listener.flush()
        for i in range(0, len(wav), step):  # the same speech again, now that analysis keeps up
            listener.feed_pcm16(pcm16(wav[i : i + step]), sr, 1)
            while listener.lag_s > 0.5:  # keep the queue short, as real time would: nothing more is dropped
                await asyncio.sleep(0.005)
        await listener.flush()
        listener.close()
        return listener, dropped

    listener, dropped = asyncio.run(main())
    total_s = len(wav) / sr
    assert total_s - 1.0 - 0.05 <= dropped <= total_s - 1.0 + 0.05  # all but max_queue_s was dropped ...
    assert listener.stats.dropped_s == dropped  # ... and nothing after
    assert listener.fed_s == pytest.approx(2 * total_s)
    # Stream time ran on across the gap: the second pass's utterances sit after the first pass.
    _, bounds = sentences_wav
    readings = listener._untaken
    assert len(readings) == listener.stats.utterances == len(bounds)
    for r, (start_s, end_s) in zip(readings, bounds):
        assert r.start_s < total_s + start_s + 0.3 and r.end_s > total_s + end_s - 0.3


def test_bad_frames_are_skipped_and_counted_and_the_stream_reads_on(recognizer, sentences_wav):
    """A frame that breaks the chunk contract (a rate of 0 or 1 Hz, no channels, an odd byte count,
    samples that do not split into the channels) neither raises, nor moves stream time, nor changes the
    stream's rate: it is counted, and the speech after it is read as if it had not come."""
    wav, sr = sf.read(sentences_wav[0], dtype="float32")
    _, bounds = sentences_wav
    step = sr // 50
    bad = [(b"\x00\x00" * 160, 1, 1), (b"\x00\x00" * 160, 0, 1), (b"\x00\x00" * 160, 16000, 0),
           (b"\x00" * 3, 16000, 1), (b"\x00\x00" * 3, 16000, 2), (b"\x00\x00" * 160, 16000.0, 1),
           (b"\x00\x00" * 160, 10**9, 1)]  # fmt: skip

    async def main():
        listener = TurnListener(recognizer)
        listener.bind()
        try:
            for k, i in enumerate(range(0, len(wav), step)):
                if k == int((bounds[0][0] + 0.5) * 50):  # in the middle of the first sentence
                    for data, rate, channels in bad:
                        listener.feed_pcm16(data, rate, channels)
                listener.feed_pcm16(pcm16(wav[i : i + step]), sr, 1)
            await listener.flush()
        finally:
            listener.close()
        return listener

    listener = asyncio.run(main())
    assert listener.stats.bad_frames == len(bad)
    assert "outside" in listener.stats.last_bad_frame and "1000000000" in listener.stats.last_bad_frame
    assert listener.fed_s == pytest.approx(len(wav) / sr)  # the bad frames did not move stream time
    readings = listener._untaken
    assert len(readings) == listener.stats.utterances == len(bounds)  # every later sentence was read
    for r, (start_s, end_s) in zip(readings, bounds):
        assert r.start_s < start_s + 0.3 and r.end_s > end_s - 0.3


def test_options_say_what_to_fix(recognizer):
    with pytest.raises(RuntimeError, match="bind"):
        asyncio.run(TurnListener(recognizer).take_readings(wait_s=0))
    with pytest.raises(ValueError, match="turns must be"):
        PerceptionOptions(turns="vad")
    with pytest.raises(ValueError, match="note_wait_s"):
        PerceptionOptions(note_wait_s=-1)
    with pytest.raises(ValueError, match="stream must be a StreamOptions"):
        PerceptionOptions(stream={"sample_rate": 16000})
    with pytest.raises(ValueError, match="note_format must be 'prose' or 'rcs'"):
        PerceptionOptions(note_format="json")


def _reading(label: str, *, confidence: float, valence: float, arousal: float, uncertain: bool = False) -> UtteranceReading:
    r = EmotionReading(
        start_s=1.0, end_s=3.5, label=label, confidence=confidence, probabilities={label: confidence, "neutral": 1 - confidence},
        valence=valence, arousal=arousal, dominance=0.5, margin=2 * confidence - 1, entropy=0.3, uncertain=uncertain,
    )  # fmt: skip
    return UtteranceReading(index=0, start_s=1.0, end_s=3.5, reading=r, latency_s=0.2)


def test_the_note_takes_its_advice_from_the_empathy_rulebook():
    angry = _reading("angry", confidence=0.8, valence=0.2, arousal=0.8)
    note = turn_note(angry)
    assert is_turn_note(note) and note.startswith(NOTE_PREFIX)
    assert angry.reading.describe() in note and "(2.5 s)" in note
    assert reply_advice(angry.reading) in note  # the rulebook's words, not a copy of them
    assert describe_levels(angry.reading) in note  # judged on the model's own scale, as the MCP prompt does
    assert "cue, not a fact" in note

    torn = _reading("sad", confidence=0.52, valence=0.4, arousal=0.3, uncertain=True)
    assert "uncertain" in turn_note(torn) and reply_advice(torn.reading) in turn_note(torn)

    test_model = turn_note(angry, random_weights=True)
    assert "random test weights" in test_model and reply_advice(angry.reading) not in test_model
    assert not is_turn_note("How can I help?") and not is_turn_note(None)


def test_the_rcs_wording_carries_the_reading_and_the_rulebooks_judgement():
    from emotion_tool.engine.results import CalibrationNote
    from emotion_tool.integrations.note import RCS_LEGEND, rcs_perception, split_perception, write_note
    from emotion_tool.science.empathy import THRESHOLDS

    angry = _reading("angry", confidence=0.8, valence=0.15, arousal=0.8)
    calibration = CalibrationNote(source="my cal.json", sha256="0" * 12, temperature=0.5, bias=False, min_confidence=0.4,
                                  fitted_for="m/published", fitted_on="dev.csv", random_weights=False)  # fmt: skip
    text = rcs_perception(angry, operating_point="live", calibration=calibration)
    z = THRESHOLDS.priors.z(angry.reading)
    assert text == (
        f"([voice_emotion angry=0.80, neutral=0.20],[voice_valence value=0.15, z={z['valence']:+.1f}],"
        f"[voice_arousal value=0.80, z={z['arousal']:+.1f}],[voice_dominance value=0.50, z={z['dominance']:+.1f}],"
        "[voice_uncertain value=false],[voice_model point=live, calibration=my_cal.json])"
    )
    assert is_turn_note(text)  # a bare perception string is a note ...
    assert split_perception(f"{text} Where is my order?") == (text, "Where is my order?")
    assert not is_turn_note(f"{text} Where is my order?")  # ... a user message it heads is not

    torn = _reading("sad", confidence=0.52, valence=0.4, arousal=0.3, uncertain=True)
    assert "[voice_uncertain value=true]" in rcs_perception(torn, operating_point="published")
    assert rcs_perception(angry, operating_point="published", random_weights=True).endswith(
        "[voice_model point=published, calibration=none, random_weights=true])"
    )
    assert rcs_perception(None, operating_point="live") is None and write_note(None, format="rcs", operating_point="live") is None
    assert write_note(angry, format="prose", operating_point="live") == turn_note(angry)
    assert f"-{THRESHOLDS.low_valence_z:g}" in RCS_LEGEND and "random_weights=true" in RCS_LEGEND  # the rulebook's numbers


def test_async_close_waits_for_the_worker_off_the_loop(recognizer):
    """`aclose` while the worker is in the middle of a reading: the loop runs on (here it lets the
    reading finish) instead of blocking in the join until it gives up."""
    held = HeldRecognizer(recognizer)

    async def main():
        listener = TurnListener(held)
        listener.bind()  # its warm-up reading now waits on the gate: the worker is busy
        assert await asyncio.to_thread(held.waiting.wait, 60)
        closing = asyncio.create_task(listener.aclose())
        await asyncio.sleep(0.05)  # a join on the loop would hold this sleep until it gave up (30 s)
        ran_while_closing = not closing.done() and listener._thread.is_alive()
        held.go.set()
        await asyncio.wait_for(closing, 60)
        return ran_while_closing, listener._thread.is_alive()

    try:
        ran_while_closing, alive = asyncio.run(main())
    finally:
        held.go.set()
    assert ran_while_closing and not alive


def test_a_turn_of_several_utterances_reads_as_their_duration_weighted_aggregate(recognizer):
    from emotion_tool.live.streaming import summarize_utterances as summarize

    from emotion_tool.integrations.note import turn_reading

    def utterance(label, index, start_s, end_s):  # a reading over all the model's labels, mostly `label`
        probs = {name: (0.7 if name == label else 0.3 / (len(recognizer.labels) - 1)) for name in recognizer.labels}
        r = EmotionReading.from_outputs(
            list(probs.values()), (0.3, 0.6, 0.5), labels=recognizer.labels, start_s=start_s, end_s=end_s, min_confidence=0.5
        )
        return UtteranceReading(index=index, start_s=start_s, end_s=end_s, reading=r, latency_s=0.1 * (index + 1))

    short, long = utterance("angry", 0, 0.0, 0.5), utterance("sad", 1, 1.0, 4.0)
    assert turn_reading([], min_confidence=0.5) is None
    assert turn_reading([long], min_confidence=0.5) is long  # one utterance: its own reading, untouched
    both = turn_reading([short, long], min_confidence=0.5)
    expected, _ = summarize([short, long], labels=list(long.reading.probabilities), min_confidence=0.5)
    assert both.reading == expected and both.reading.label == "sad"  # the long utterance weighs more
    assert (both.index, both.start_s, both.end_s, both.latency_s) == (0, 0.0, 4.0, long.latency_s)
    note = turn_note(both, utterances=2)
    assert "turn (2 utterances over 4.0 s)" in note and expected.describe() in note
