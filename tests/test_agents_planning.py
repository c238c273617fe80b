"""Planning: strategy per emotion, baseline events, uncertainty, configuration (no model needed)."""

from __future__ import annotations

import pytest

from agents.planning import PLAYBOOK, PlanningConfig, baseline_trend, detect_events, plan_dialogue, strategy_for
from emotion_tool.science.empathy import THRESHOLDS, choose_strategy
from agents.prompts import OFFLINE_HANDOVER, OFFLINE_REPLIES, offline_reply
from agents.state import EmotionTurn
from emotion_tool import LABELS, EmotionReading


def reading(label: str = "neutral", confidence: float = 0.8, *, valence: float = 0.5, arousal: float = 0.5,
            dominance: float = 0.5, t: float = 0.0, duration_s: float = 3.0) -> EmotionReading:  # fmt: skip
    """A synthetic reading: `confidence` on `label`, the rest spread evenly over the other labels."""
    rest = (1.0 - confidence) / (len(LABELS) - 1)
    probs = [confidence if name == label else rest for name in LABELS]
    return EmotionReading.from_outputs(
        probs, (valence, arousal, dominance), labels=LABELS, start_s=t, end_s=t + duration_s, min_confidence=0.5
    )


def turns(readings: list[EmotionReading], speaker: str = "user") -> list[EmotionTurn]:
    return [EmotionTurn(turn=i + 1, speaker=speaker, reading=r, source="audio", speech_s=2.5) for i, r in enumerate(readings)]


def plan_last(readings: list[EmotionReading], config: PlanningConfig = PlanningConfig()):
    history = turns(readings)
    return plan_dialogue(history[-1], history[:-1], config)


EXPECTED = {
    "angry": "de-escalate",
    "disgusted": "de-escalate",
    "sad": "comfort",
    "fearful": "reassure",
    "happy": "share-enthusiasm",
    "surprised": "clarify",
    "neutral": "neutral",
}


@pytest.mark.parametrize("label", LABELS)
def test_each_emotion_maps_to_its_strategy(label):
    plan = plan_last([reading(label, 0.8)])
    assert plan.name == EXPECTED[label]
    assert plan.emotion == label and not plan.uncertain and plan.leaning is None
    assert plan.goals[: len(PLAYBOOK[plan.name].goals)] == list(PLAYBOOK[plan.name].goals)
    assert plan.tone == PLAYBOOK[plan.name].tone
    assert offline_reply(plan) == OFFLINE_REPLIES[plan.name]


def test_a_first_turn_and_a_lone_reading_follow_one_rule():
    # A first turn (no history: the population priors) and a lone reading (the MCP prompt, the voice
    # note) go through the same thresholds, on narrow-band readings like the published model's.
    for valence in (0.12, 0.15, 0.17, 0.26, 0.35, 0.41):
        for arousal in (0.3, 0.5, 0.8):
            r = reading("neutral", valence=valence, arousal=arousal)
            lone = choose_strategy(r.label, negative=THRESHOLDS.is_negative(r), agitated=THRESHOLDS.is_agitated(r))
            assert plan_dialogue(EmotionTurn(turn=1, reading=r, source="audio", speech_s=2.5)).name == lone
    assert not THRESHOLDS.is_negative(reading(valence=0.26)) and THRESHOLDS.is_negative(reading(valence=0.12))
    assert PlanningConfig().low_valence_z == THRESHOLDS.low_valence_z and PlanningConfig().scale.priors == THRESHOLDS.priors


def test_neutral_label_is_judged_by_valence_and_arousal():
    # On the population priors (valence about 0.27 +- 0.07, arousal 0.5 +- 0.15): 0.1 is well below.
    assert strategy_for(reading("neutral", valence=0.1, arousal=0.8)) == "de-escalate"
    assert strategy_for(reading("neutral", valence=0.1, arousal=0.3)) == "comfort"
    assert strategy_for(reading("neutral", valence=0.2, arousal=0.3)) == "neutral"  # within the usual band
    assert strategy_for(reading("neutral", valence=0.6, arousal=0.8)) == "neutral"


def test_arousal_rising_above_baseline_fires():
    calm = [reading("neutral", arousal=a, t=i) for i, a in enumerate((0.30, 0.32, 0.28, 0.30))]
    plan = plan_last([*calm, reading("neutral", arousal=0.7, t=4)])
    assert [e.kind for e in plan.events] == ["arousal-rising"]
    assert plan.scale.source == "speaker" and plan.scale.mean["arousal"] == pytest.approx(0.3)
    assert plan.events[0].value == pytest.approx(0.4 / plan.scale.sd["arousal"]) and plan.events[0].threshold == 2.0
    assert plan.trend.turns == 4 and plan.trend.baseline_arousal == pytest.approx(0.3)
    assert any("Tension is rising" in g for g in plan.goals)


def test_valence_falling_over_several_turns_fires():
    plan = plan_last([reading("neutral", valence=v, t=i) for i, v in enumerate((0.7, 0.55, 0.4))])
    assert [e.kind for e in plan.events] == ["valence-falling"]
    assert plan.events[0].value == pytest.approx(0.3 / 0.0725)  # in sd of the population prior
    # One rise in the series breaks the run.
    assert not plan_last([reading("neutral", valence=v, t=i) for i, v in enumerate((0.7, 0.75, 0.4))]).events


def test_persistent_negative_state_hands_over():
    history = [reading("angry", 0.8, valence=0.2, arousal=0.5, t=i) for i in range(3)]
    assert not plan_last(history[:2]).handover
    plan = plan_last(history)
    assert plan.handover and plan.name == "de-escalate"
    assert [e.kind for e in plan.events] == ["persistent-negative"]
    assert plan.goals[0].startswith("Offer to hand the conversation to a person")
    assert offline_reply(plan).endswith(OFFLINE_HANDOVER)


def test_flat_trajectory_fires_nothing():
    flat = [reading("neutral", 0.8, valence=0.6, arousal=0.4, t=i) for i in range(8)]
    history = turns(flat)
    for i in range(len(history)):
        plan = plan_dialogue(history[i], history[:i])
        assert plan.events == [] and not plan.handover and plan.name == "neutral"
        if i >= 2:
            assert plan.trend.arousal_change == pytest.approx(0.0) and plan.trend.valence_change == pytest.approx(0.0)


def test_flat_negative_speaker_is_not_flagged_as_changing():
    """A speaker who always sounds low has no arousal or valence events, only the persistent state."""
    low = [reading("sad", 0.8, valence=0.3, arousal=0.3, t=i) for i in range(5)]
    kinds = [e.kind for e in plan_last(low).events]
    assert kinds == ["persistent-negative"]


@pytest.mark.parametrize(
    "uncertain_reading, speech_s, why",
    [
        (reading("angry", 0.3, valence=0.2, arousal=0.8), 2.5, "confidence 0.30 is low"),
        (reading("angry", 0.52, valence=0.2, arousal=0.8).model_copy(update={"margin": 0.05}), 2.5, "margin 0.05"),
        (reading("angry", 0.8, valence=0.2, arousal=0.8, duration_s=0.6), 0.6, "only 0.6 s"),
        (reading("angry", 0.8, valence=0.2, arousal=0.8), 0.0, "no speech was detected"),
    ],
)
def test_uncertain_reading_softens_the_plan(uncertain_reading, speech_s, why):
    angry = [EmotionTurn(turn=i + 1, reading=reading("angry", 0.9, valence=0.2, t=i), source="audio") for i in range(3)]
    current = EmotionTurn(turn=4, reading=uncertain_reading, source="audio", speech_s=speech_s)
    plan = plan_dialogue(current, angry)
    assert plan.uncertain and plan.name == "neutral" and plan.leaning == "de-escalate"
    assert not plan.handover  # an unsure turn never escalates to a person
    assert any(why in n for n in plan.notes)
    assert "presume" in plan.tone and "naming or diagnosing the user's emotion" in plan.avoid
    assert any("the model is unsure" in g for g in plan.goals)
    confident = plan_dialogue(EmotionTurn(turn=4, reading=reading("angry", 0.9, valence=0.2), source="audio"), angry)
    assert confident.name == "de-escalate" and confident.handover and not confident.uncertain


def test_uncertain_turns_break_a_negative_streak():
    history = turns([reading("angry", 0.9, t=0), reading("angry", 0.3, t=1), reading("angry", 0.9, t=2)])
    assert not plan_dialogue(history[-1], history[:-1]).handover


def test_no_reading_plans_neutral_and_says_why():
    plan = plan_dialogue(EmotionTurn(turn=1, source="none"), [])
    assert plan.name == "neutral" and plan.uncertain and plan.emotion is None
    assert plan.notes == ["No emotion reading this turn; respond to the words alone."]


def test_thresholds_are_configuration():
    calm = [reading("neutral", arousal=a, t=i) for i, a in enumerate((0.30, 0.32, 0.28, 0.30))]
    rising = [*calm, reading("neutral", arousal=0.36, t=4)]  # +3.5 sd on this speaker's scale
    assert [e.kind for e in plan_last(rising).events] == ["arousal-rising"]
    assert plan_last(rising, PlanningConfig(arousal_rise_z=4.0)).events == []
    angry = [reading("angry", 0.8, t=i) for i in range(3)]
    assert plan_last(angry).handover
    assert not plan_last(angry, PlanningConfig(handover_turns=None)).handover
    assert plan_last([reading("angry", 0.45)], PlanningConfig(min_confidence=0.4)).name == "de-escalate"
    assert plan_last([reading("angry", 0.8)], PlanningConfig(min_confidence=0.9)).uncertain
    assert plan_last([reading("happy")], PlanningConfig(strategies={"happy": "neutral"})).name == "neutral"


def test_baseline_is_per_speaker_and_windowed():
    other = turns([reading("neutral", arousal=0.9, t=i) for i in range(4)], speaker="agent-b")
    mine = turns([reading("neutral", arousal=a, t=10 + i) for i, a in enumerate((0.2, 0.21, 0.19, 0.2))])
    current = EmotionTurn(turn=7, reading=reading("neutral", arousal=0.6, t=20), source="audio")
    trend = baseline_trend(current, [*other, *mine])
    assert trend.turns == 4 and trend.baseline_arousal == pytest.approx(0.2)
    assert [e.kind for e in detect_events(current, [*other, *mine])] == ["arousal-rising"]
    long = turns([reading("neutral", arousal=a, t=i) for i, a in enumerate((0.9, 0.9, 0.1, 0.1))])
    assert baseline_trend(current, long, PlanningConfig(baseline_turns=2)).baseline_arousal == pytest.approx(0.1)


def test_config_rejects_impossible_values():
    with pytest.raises(ValueError, match="min_baseline_turns=4 exceeds baseline_turns=3"):
        PlanningConfig(baseline_turns=3, min_baseline_turns=4)
    with pytest.raises(ValueError, match="min_margin is on the 0..1 scale"):
        PlanningConfig(min_margin=1.5)
    with pytest.raises(ValueError):
        PlanningConfig(strategies={"angry": "shout-back"})
