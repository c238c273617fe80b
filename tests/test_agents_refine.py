"""A refinement in the agent: turns answered on the fast reading, then the faithful one kept in history and profile."""

from __future__ import annotations

import time

import numpy as np
import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.store.memory import InMemoryStore

from agents import build_empathic_agent
from agents.scale import SpeakerProfile, load_profile
from emotion_tool import EmotionRecognizer
from emotion_tool.engine.results import EmotionReading
from helpers import HeldRecognizer


@pytest.fixture(scope="module")
def fast(tiny_checkpoint):
    return EmotionRecognizer.from_pretrained(tiny_checkpoint, device="cpu", operating_point="trimmed")


class HeldFaithful(HeldRecognizer):
    """A faithful recognizer whose analyses wait until the test lets them go."""

    def operating_point(self, *args, **kwargs):
        return self._rec.operating_point(*args, **kwargs)

    def analyze(self, *args, **kwargs):
        self.waiting.set()
        self.go.wait(60)
        return self._rec.analyze(*args, **kwargs)


def _dims(r: EmotionReading) -> list[float]:
    return [r.valence, r.arousal, r.dominance]


def test_the_next_turn_puts_the_faithful_reading_in_the_history_and_the_profile(fast, recognizer, speech_wav, sentences_wav):
    faithful = HeldFaithful(recognizer)
    store = InMemoryStore()
    graph = build_empathic_agent(fast, checkpointer=InMemorySaver(), store=store, refine_with=faithful)
    config = {"configurable": {"thread_id": "t1"}}
    try:
        first = graph.invoke({"audio": str(speech_wav), "transcript": "I am not happy", "speaker": "ana"}, config=config)
        # Turn 1 was planned and answered on the fast reading: the faithful one is still held.
        (turn1,) = first["emotion_history"]
        assert (turn1.operating_point, turn1.refined) == ("trimmed", False)
        assert first["reading"] == turn1.reading
        fast_reading = turn1.reading
        faithful.go.set()
        while graph.perception.pending("t1"):  # the faithful reading is in before the next turn
            time.sleep(0.01)
        second = graph.invoke({"audio": str(sentences_wav[0]), "transcript": "Still waiting", "speaker": "ana"}, config=config)
    finally:
        faithful.go.set()
    turn1, turn2 = second["emotion_history"]
    assert (turn1.turn, turn1.operating_point, turn1.refined, turn1.replaces) == (1, "published", True, None)
    assert (turn2.turn, turn2.operating_point, turn2.refined) == (2, "trimmed", False)
    expected = recognizer.analyze(str(speech_wav)).summary  # what the faithful point reads alone
    assert np.allclose(list(turn1.reading.probabilities.values()), list(expected.probabilities.values()), atol=1e-6)
    # The profile holds the faithful reading of turn 1 (the fast one taken out) and the fast one of turn 2.
    profile = load_profile(store, "ana")
    want = SpeakerProfile.of("ana", [turn1.reading, turn2.reading])
    assert profile.turns == 2 and profile.labels == want.labels
    for d in ("valence", "arousal", "dominance"):
        assert profile.mean[d] == pytest.approx(want.mean[d], abs=1e-9) and profile.m2[d] == pytest.approx(want.m2[d], abs=1e-9)
    assert _dims(fast_reading) != _dims(turn1.reading)  # the correction changed something
    # After the last turn the caller takes the remaining faithful turn and writes it into the thread.
    (last,) = graph.apply_refinements(config, wait_s=60)
    assert last.turn == 2 and last.operating_point == "published"
    kept = graph.get_state(config).values["emotion_history"]
    assert [(t.turn, t.refined) for t in kept] == [(1, True), (2, True)]
    assert graph.apply_refinements(config) == []  # nothing outstanding: nothing written


def test_a_profile_replacement_is_welford_exact_and_counts_once():
    def reading(v, a, d, label="happy"):
        probs = {"happy": 0.6, "sad": 0.4} if label == "happy" else {"happy": 0.4, "sad": 0.6}
        return EmotionReading.from_outputs(list(probs.values()), [v, a, d], labels=list(probs), start_s=0.0, end_s=1.0, min_confidence=0.5)

    readings = [reading(0.3, 0.5, 0.6), reading(0.4, 0.55, 0.5, "sad"), reading(0.5, 0.45, 0.55)]
    better = reading(0.35, 0.6, 0.52, "sad")
    profile = SpeakerProfile.of("ana", readings).replace(readings[1], better, turn_id="t:2")
    want = SpeakerProfile.of("ana", [readings[0], better, readings[2]])
    assert profile.turns == 3 and profile.labels == want.labels
    for d in ("valence", "arousal", "dominance"):
        assert profile.mean[d] == pytest.approx(want.mean[d], abs=1e-12) and profile.m2[d] == pytest.approx(want.m2[d], abs=1e-12)
    assert profile.replace(readings[1], better, turn_id="t:2") == profile  # a retried turn replaces once
    one = SpeakerProfile.of("bo", [readings[0]]).replace(readings[0], better)
    assert one.mean["valence"] == pytest.approx(0.35) and one.m2["valence"] == 0.0 and one.labels == {"sad": 1}
    with pytest.raises(ValueError, match="finite"):
        SpeakerProfile.of("bo", [readings[0]]).replace(readings[0], better.model_copy(update={"valence": float("nan")}))


def test_a_failing_faithful_reading_leaves_the_fast_one_and_warns(fast, recognizer, speech_wav):
    class Broken(HeldFaithful):
        def analyze(self, *args, **kwargs):
            raise RuntimeError("the faithful model ran out of memory")

    graph = build_empathic_agent(fast, checkpointer=InMemorySaver(), store=InMemoryStore(), refine_with=Broken(recognizer))
    config = {"configurable": {"thread_id": "t2"}}
    graph.invoke({"audio": str(speech_wav), "transcript": "hello"}, config=config)
    while graph.perception.pending("t2"):
        time.sleep(0.01)
    with pytest.warns(UserWarning, match="turn 1 keeps its fast reading.*ran out of memory"):
        out = graph.invoke({"audio": str(speech_wav), "transcript": "hello again"}, config=config)
    assert [(t.turn, t.refined) for t in out["emotion_history"]] == [(1, False), (2, False)]
