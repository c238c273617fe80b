"""The empathy rulebook: how a reading of the voice shapes a reply. One table every consumer reads.

The LangGraph planner (`agents/planning.py`), its prompts (`agents/prompts.py`), the MCP server's
`empathetic_reply` prompt (`mcp_server/prompts.py`) and the voice-framework note
(`emotion_tool/integrations/note.py`) all take their strategies, tone, wording and thresholds from
here, so every consumer meets a voice the same way. No model, no framework.

The published model reads valence, arousal and dominance on a narrow part of its 0..1 scales
(valence about 0.12-0.41 on acted English speech), so a fixed cut on that scale ("valence at or
below 0.35 is negative") calls almost every reading negative. Levels are therefore judged in standard
deviations from a usual level: the speaker's own, once the planner has heard enough of them
(`agents.scale`), and otherwise the model's population priors (`PopulationPriors`), as for a lone
reading (the MCP prompt, the voice note, a speaker's first turns). One set of thresholds
(`EmpathyThresholds`) serves both; `choose_strategy` is the rule they feed.

Layer 3, science (`emotion_tool.science`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from emotion_tool.engine.results import EmotionReading

__all__ = [
    "StrategyName",
    "DimensionPrior",
    "PopulationPriors",
    "EmpathyThresholds",
    "Playbook",
    "STRATEGY_FOR_LABEL",
    "PLAYBOOK",
    "LABEL_ADVICE",
    "OFFLINE_REPLIES",
    "choose_strategy",
    "reply_advice",
    "describe_levels",
]

StrategyName = Literal["de-escalate", "comfort", "reassure", "share-enthusiasm", "clarify", "neutral"]
"""How to meet the user: the dialogue strategies a reading can call for."""

DIMENSIONS = ("valence", "arousal", "dominance")


class DimensionPrior(BaseModel):
    """Where one dimension of the model's outputs usually sits, and where the figures come from."""

    model_config = ConfigDict(frozen=True)

    mean: float = Field(ge=0.0, le=1.0, description="Typical value, 0..1")
    sd: float = Field(gt=0.0, le=0.5, description="Typical spread (one standard deviation)")
    source: str = Field(description="Where the figures come from; 'placeholder' when they are not measured")

    def describe(self) -> str:
        """E.g. "0.27 +- 0.07 (span 0.12-0.41 reported by users ...)"."""
        return f"{self.mean:.2f} +- {self.sd:.2f} ({self.source})"


class PopulationPriors(BaseModel):
    """The model's outputs over many speakers: the scale of a lone reading, and of a speaker until
    their own is known.

    Defaults describe MERaLiON-SER-v1 as far as published reports go. Replace them with figures
    measured on your own recordings (`agents.scale.SpeakerProfile` over a corpus gives mean and sd).
    """

    model_config = ConfigDict(frozen=True)

    valence: DimensionPrior = Field(
        # Users of the published model report valence spanning about 0.12-0.41 on an acted English
        # corpus; the mean is the middle of that span and the sd a quarter of it (the span read as
        # about +-2 sd). Not measured here: no published weights are available to this package.
        default=DimensionPrior(
            mean=0.265, sd=0.0725, source="span 0.12-0.41 reported by users of the published model (acted English)"
        ),
        description="Valence prior",
    )
    arousal: DimensionPrior = Field(
        # No published figures: the scale's midpoint and a sd of 0.15 stand in until measured.
        default=DimensionPrior(mean=0.5, sd=0.15, source="placeholder: not measured on the published weights"),
        description="Arousal prior",
    )
    dominance: DimensionPrior = Field(
        default=DimensionPrior(mean=0.5, sd=0.15, source="placeholder: not measured on the published weights"),
        description="Dominance prior",
    )

    def z(self, reading: EmotionReading) -> dict[str, float]:
        """`reading`'s valence, arousal and dominance in standard deviations from the priors' means."""
        return {d: (float(getattr(reading, d)) - getattr(self, d).mean) / getattr(self, d).sd for d in DIMENSIONS}

    def describe(self) -> str:
        """One line naming each prior and its source."""
        return "; ".join(f"{d} {getattr(self, d).describe()}" for d in DIMENSIONS)


POPULATION_PRIORS = PopulationPriors()
"""The priors every consumer uses unless given others."""


@dataclass(frozen=True)
class EmpathyThresholds:
    """When a reading counts as negative, agitated or torn.

    Valence and arousal thresholds are in standard deviations from a usual level (the speaker's,
    or `priors` for a lone reading), not on the 0..1 scales; `min_margin` is a probability.
    """

    # |z| >= 1.5 lies outside the central 87 % of a normal distribution: a convention for "clearly
    # unusual", not fitted to data. On the valence prior it puts "negative" at or below 0.16.
    low_valence_z: float = 1.5  # valence this many sd below the usual level counts as negative
    high_arousal_z: float = 1.5  # arousal this many sd above the usual level counts as agitated (same convention)
    # Set by hand: two emotions within 0.10 of each other are too close to act on (the recognizer's
    # own `uncertain` flag, from AnalysisOptions.min_confidence or a calibration, is checked too).
    min_margin: float = 0.10  # top-1 minus top-2 probability below this: torn between two emotions (uncertain)
    negative_labels: tuple[str, ...] = ("angry", "sad", "fearful", "disgusted")  # labels that count as a negative state
    priors: PopulationPriors = field(default=POPULATION_PRIORS)  # the usual level of a lone reading (no speaker history)

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_margin <= 1.0:
            raise ValueError(f"min_margin is a probability on the 0..1 scale, got {self.min_margin}")
        for name in ("low_valence_z", "high_arousal_z"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} is a positive number of standard deviations, got {getattr(self, name)}")

    def is_negative(self, reading: EmotionReading, z: Mapping[str, float] | None = None) -> bool:
        """Valence `low_valence_z` sd or more below the usual level: `z` (the reading on the speaker's
        scale) when given, else the population priors."""
        return (self.priors.z(reading) if z is None else z)["valence"] <= -self.low_valence_z

    def is_agitated(self, reading: EmotionReading, z: Mapping[str, float] | None = None) -> bool:
        """Arousal `high_arousal_z` sd or more above the usual level (`z` or the priors, as `is_negative`)."""
        return (self.priors.z(reading) if z is None else z)["arousal"] >= self.high_arousal_z

    def is_torn(self, reading: EmotionReading) -> bool:
        """The reading's own `uncertain` flag, or a runner-up closer than `min_margin`."""
        return reading.uncertain or reading.margin < self.min_margin


THRESHOLDS = EmpathyThresholds()
"""The thresholds every consumer uses unless given others."""

STRATEGY_FOR_LABEL: Mapping[str, StrategyName] = {
    "angry": "de-escalate",
    "disgusted": "de-escalate",
    "sad": "comfort",
    "fearful": "reassure",
    "happy": "share-enthusiasm",
    "surprised": "clarify",
}
"""The strategy of each confident label; other labels (neutral, a custom checkpoint's) go by valence and arousal."""


@dataclass(frozen=True)
class Playbook:
    """What a strategy asks of a reply."""

    goals: tuple[str, ...]  # what the reply should do, in order
    tone: str  # how it should sound
    avoid: tuple[str, ...]  # what it must not do


PLAYBOOK: Mapping[StrategyName, Playbook] = {
    "de-escalate": Playbook(
        goals=(
            "Acknowledge the frustration in one short sentence, without judging it.",
            "Offer one concrete next step you can take.",
            "Keep it brief and let the user steer.",
        ),
        tone="calm, slow and steady; short sentences",
        avoid=("arguing or correcting the user", "forced cheerfulness or exclamation marks", "telling the user to calm down"),
    ),
    "comfort": Playbook(
        goals=(
            "Validate what the user feels before offering anything.",
            "Ask gently what would help right now.",
            "Offer support at the user's pace.",
        ),
        tone="warm, gentle and unhurried",
        avoid=("minimising the feeling", "jumping straight to solutions", "upbeat enthusiasm"),
    ),
    "reassure": Playbook(
        goals=(
            "Acknowledge the worry.",
            "Say clearly and concretely what happens next.",
            "Point out what is under control and what the user can do.",
        ),
        tone="steady and clear; confident without brushing the worry aside",
        avoid=("vague promises", "alarming words", "burying the user in detail"),
    ),
    "share-enthusiasm": Playbook(
        goals=("Match the user's positive energy.", "Build on what pleases them.", "Keep the momentum toward their goal."),
        tone="bright, warm and lively",
        avoid=("flat, purely transactional replies", "dampening the mood with needless caveats"),
    ),
    "clarify": Playbook(
        goals=(
            "Acknowledge that something was unexpected.",
            "Ask what surprised the user, and explain it plainly.",
            "Confirm understanding before moving on.",
        ),
        tone="open, curious and clear",
        avoid=("assuming the surprise is good or bad", "long explanations before checking"),
    ),
    "neutral": Playbook(
        goals=("Answer the user's request directly and helpfully.", "Stay attentive to changes in how the user sounds."),
        tone="friendly, clear and efficient",
        avoid=("commenting on the user's feelings without reason",),
    ),
}
"""Goals, tone and what to avoid for each strategy."""

HANDOVER_GOAL = "Offer to hand the conversation to a person (a human colleague), and make it easy to accept."
AROUSAL_GOAL = "Tension is rising: slow down, keep sentences short, and acknowledge it before going on."
VALENCE_GOAL = "The mood has been sinking for several turns: check whether something in the conversation is going wrong."
MISMATCH_GOAL = (
    "The words and the voice disagree: do not take the words at face value; acknowledge gently and ask "
    "whether everything is really all right."
)

# How to meet each emotion in a reply, as one instruction to an assistant. Cues for tone, never a
# script: the words come first.
LABEL_ADVICE: Mapping[str, str] = {
    "neutral": "Reply in a plain, friendly tone; there is no strong feeling to respond to.",
    "happy": "Match their good mood with warmth; keep it light, and do not dampen it with needless caveats.",
    "sad": "Be gentle and unhurried; acknowledge that things may be hard before offering help, and avoid forced cheer.",
    "angry": (
        "Stay calm and respectful; acknowledge the frustration in one sentence, do not argue or get defensive, "
        "and move quickly to concrete help. Keep it short."
    ),
    "fearful": "Be reassuring and steady; give clear, simple next steps and say what will happen, without alarm.",
    "disgusted": "Take the objection seriously; acknowledge what put them off without judging, and offer an alternative.",
    "surprised": "Check what surprised them and explain clearly; do not assume whether the surprise is good or bad.",
}
UNSURE_ADVICE = "Keep your tone neutral and kind; adapt only if their words point the same way. "
AGITATED_ADVICE = " They sound agitated and negative: keep sentences short and calm."
LOW_ADVICE = (
    "Their voice sounds low, well below the model's usual level: be gentle and unhurried, and make room for how "
    "they feel before offering help."
)
PLAIN_ADVICE = "Reply to what they said, in a plain, friendly tone."

OFFLINE_REPLIES: Mapping[StrategyName, str] = {
    "de-escalate": "I hear that this has been frustrating, and I want to help put it right. "
    "Let's take it one step at a time: what matters most to you right now?",
    "comfort": "That sounds really hard, and it makes sense to feel that way. "
    "I'm here with you; what would help most right now?",
    "reassure": "I understand this feels worrying. Let's go through what happens next, step by step, "
    "and I'll stay with you while we do.",
    "share-enthusiasm": "That's great to hear! Let's keep that going. What would you like to do next?",
    "clarify": "That seems to have come as a surprise. Let me make sure I follow: what caught you off guard?",
    "neutral": "Thanks, I'm following. How can I help next?",
}
"""The deterministic responder's reply for each strategy, used when no chat model is configured."""

OFFLINE_CHECK_IN = "How are you feeling about all this so far?"
OFFLINE_HANDOVER = "If you'd rather talk it through with a person, I can connect you with a colleague now."


def choose_strategy(
    label: str, *, negative: bool, agitated: bool, strategies: Mapping[str, StrategyName] = STRATEGY_FOR_LABEL
) -> StrategyName:
    """The strategy a confident reading calls for.

    The label decides through `strategies`; for other labels (neutral, or labels of a custom
    checkpoint) valence and arousal decide: negative and agitated → de-escalate, negative → comfort.
    Callers judge negative and agitated with `EmpathyThresholds`, on the speaker's scale or the priors.
    """
    if label in strategies:
        return strategies[label]
    if negative:
        return "de-escalate" if agitated else "comfort"
    return "neutral"


def reply_advice(
    reading: EmotionReading | None, *, thresholds: EmpathyThresholds = THRESHOLDS, z: Mapping[str, float] | None = None
) -> str:
    """One instruction on how to adapt a reply to `reading` (None: no usable reading).

    Valence and arousal are judged by `thresholds` against `z` (the reading on the speaker's own
    scale) when given, else against the population priors.
    """
    if reading is None:
        return PLAIN_ADVICE
    negative = thresholds.is_negative(reading, z)
    advice = LABEL_ADVICE.get(reading.label, LABEL_ADVICE["neutral"])
    if negative and reading.label not in STRATEGY_FOR_LABEL:  # as `choose_strategy`: a low voice calls for comfort
        advice = LOW_ADVICE
    if thresholds.is_torn(reading):
        advice = UNSURE_ADVICE + advice
    # Anger's advice already asks for short, calm sentences.
    if negative and thresholds.is_agitated(reading, z) and reading.label != "angry":
        advice += AGITATED_ADVICE
    return advice


def describe_levels(reading: EmotionReading, *, thresholds: EmpathyThresholds = THRESHOLDS) -> str:
    """One sentence for an LLM: valence and arousal against the model's usual level (the priors), in sd."""
    z = thresholds.priors.z(reading)
    valence = (
        "clearly low: the voice sounds negative"
        if thresholds.is_negative(reading)
        else "clearly high" if z["valence"] >= thresholds.low_valence_z else "within the usual range"
    )
    arousal = (
        "clearly high: the voice sounds agitated"
        if thresholds.is_agitated(reading)
        else "clearly low" if z["arousal"] <= -thresholds.high_arousal_z else "within the usual range"
    )
    p = thresholds.priors
    return (
        "The model's outputs sit in a narrow band, so judge them against its usual level, not the 0..1 scale: "
        f"valence is {z['valence']:+.1f} sd from its usual {p.valence.mean:.2f} ({valence}), "
        f"arousal {z['arousal']:+.1f} sd from its usual {p.arousal.mean:.2f} ({arousal})."
    )
