"""The empathy rulebook: how a reading of the voice shapes a reply. One table every consumer reads.

The LangGraph planner (`agents/planning.py`), its prompts (`agents/prompts.py`) and the MCP server's
`empathetic_reply` prompt (`mcp_server/prompts.py`) all take their strategies, tone, wording and
thresholds from here, so the agent and the assistant behind MCP meet a voice the same way.
Pure Python: no model, no framework.

Thresholds (`EmpathyThresholds`) come in two kinds, one set of each:

- speaker-relative, in standard deviations from the speaker's own level (`low_valence_z`,
  `high_arousal_z`: 1.5 sd). The planner uses these: the model reads each speaker on a narrow,
  speaker-dependent part of the 0..1 scale (`agents.scale` puts a turn on the speaker's scale,
  starting from the model's population priors).
- absolute, on the model's 0..1 scales (valence <= 0.35 negative, arousal >= 0.65 agitated), for a
  lone reading with no history to compare with: the MCP prompt sees one analysis at a time. These are
  the planner's former hand-set values; the MCP prompt used to carry a second copy (valence < 0.4,
  arousal > 0.65), which this table replaces.

Both kinds share `min_margin` (a top-1 lead under 0.10 is torn between two emotions) and the
negative labels, and both feed the same rule, `choose_strategy`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Mapping

if TYPE_CHECKING:
    from .results import EmotionReading

__all__ = [
    "StrategyName",
    "EmpathyThresholds",
    "Playbook",
    "STRATEGY_FOR_LABEL",
    "PLAYBOOK",
    "LABEL_ADVICE",
    "OFFLINE_REPLIES",
    "choose_strategy",
    "reply_advice",
]

StrategyName = Literal["de-escalate", "comfort", "reassure", "share-enthusiasm", "clarify", "neutral"]
"""How to meet the user: the dialogue strategies a reading can call for."""


@dataclass(frozen=True)
class EmpathyThresholds:
    """When a reading counts as negative, agitated or torn. Values are on the model's 0..1 scales."""

    low_valence_z: float = 1.5  # valence this many sd below the speaker's usual level counts as negative
    high_arousal_z: float = 1.5  # arousal this many sd above the speaker's usual level counts as agitated
    low_valence: float = 0.35  # a lone reading: valence at or below this counts as negative
    high_arousal: float = 0.65  # a lone reading: arousal at or above this counts as agitated
    min_margin: float = 0.10  # top-1 minus top-2 probability below this: torn between two emotions (uncertain)
    negative_labels: tuple[str, ...] = ("angry", "sad", "fearful", "disgusted")  # labels that count as a negative state

    def __post_init__(self) -> None:
        for name in ("low_valence", "high_arousal", "min_margin"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} is on the 0..1 scale, got {getattr(self, name)}")
        for name in ("low_valence_z", "high_arousal_z"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} is a positive number of standard deviations, got {getattr(self, name)}")

    def is_negative(self, reading: EmotionReading) -> bool:
        """Valence at or below `low_valence`."""
        return reading.valence <= self.low_valence

    def is_agitated(self, reading: EmotionReading) -> bool:
        """Arousal at or above `high_arousal`."""
        return reading.arousal >= self.high_arousal

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
    Callers say what negative and agitated mean: on the speaker's scale (the planner) or absolutely.
    """
    if label in strategies:
        return strategies[label]
    if negative:
        return "de-escalate" if agitated else "comfort"
    return "neutral"


def reply_advice(reading: EmotionReading | None, *, thresholds: EmpathyThresholds = THRESHOLDS) -> str:
    """One instruction on how to adapt a reply to `reading` (None: no usable reading)."""
    if reading is None:
        return PLAIN_ADVICE
    advice = LABEL_ADVICE.get(reading.label, LABEL_ADVICE["neutral"])
    if thresholds.is_torn(reading):
        advice = UNSURE_ADVICE + advice
    # Anger's advice already asks for short, calm sentences.
    if thresholds.is_agitated(reading) and thresholds.is_negative(reading) and reading.label != "angry":
        advice += AGITATED_ADVICE
    return advice
