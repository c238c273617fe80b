"""What the chat model is told about how the user sounds, and the offline replies."""

from __future__ import annotations

from emotion_tool.science.empathy import OFFLINE_REPLIES
from emotion_tool.engine.results import DIMENSION_MEANINGS, EmotionReading

from .state import DialoguePlan

SYSTEM_PROMPT = """You are a helpful voice assistant in a spoken conversation. Along with each user turn you \
receive a reading of how the user's voice sounds, from a speech emotion recognition model, and a dialogue \
strategy planned from it.

{emotion_context}

{strategy}

Treat the reading as a cue, not a fact: the model hears how something was said, not what was said, and it \
can be wrong. Let it shape your tone and priorities. Do not tell the user what they feel, and do not mention \
the emotion model unless they ask about it. Answer in a few short sentences meant to be spoken aloud."""
"""The system message. `{emotion_context}` and `{strategy}` are filled in each turn."""

NO_TRANSCRIPT = "[The user spoke, but their words were not transcribed.]"
"""Stands for the user's words in the conversation when only audio arrived."""

AUDIO_ONLY = "[The user's spoken turn is in the attached audio.]"
"""Stands for the user's words next to the audio block sent to an audio-capable model."""

OFFLINE_CHECK_IN = "How are you feeling about all this so far?"
OFFLINE_HANDOVER = "If you'd rather talk it through with a person, I can connect you with a colleague now."


def emotion_context(reading: EmotionReading | None, plan: DialoguePlan) -> str:
    """How the user sounds this turn, in plain lines: emotion, dimensions, trend, events, caveats."""
    lines = ["How the user sounds this turn (speech emotion recognition; a cue, not a fact):"]
    if reading is None:
        lines.append("- No emotion reading this turn.")
    else:
        lines.append(
            f"- Emotion: {reading.label}, confidence {reading.confidence:.2f} "
            f"(margin over the runner-up {reading.margin:.2f})"
        )
        top = sorted(reading.probabilities.items(), key=lambda kv: kv[1], reverse=True)[:3]
        lines.append("- Most probable: " + ", ".join(f"{k} {v:.2f}" for k, v in top))
        lines.append(
            "- "
            + ", ".join(
                f"{d.capitalize()} {getattr(reading, d):.2f} ({DIMENSION_MEANINGS[d]})"
                for d in ("valence", "arousal", "dominance")
            )
        )
        lines.append(
            "- Certainty: UNCERTAIN, do not act on the emotion strongly" if plan.uncertain else "- Certainty: confident"
        )
    if plan.scale is not None:
        lines.append(f"- Level: {plan.scale.describe()}")
    if plan.words_against_voice is not None:
        lines.append(f"- WORDS AGAINST VOICE: {plan.words_against_voice.detail}")
    lines.append(f"- Trend: {plan.trend.describe()}" if plan.trend else "- Trend: not enough earlier turns for a baseline")
    lines.append("- Events: " + ("; ".join(e.detail for e in plan.events) if plan.events else "none"))
    lines += [f"- Caveat: {n}" for n in plan.notes]
    return "\n".join(lines)


def strategy_text(plan: DialoguePlan) -> str:
    """The plan as instructions: strategy, goals, tone, what to avoid."""
    head = f"Dialogue strategy: {plan.name}"
    if plan.leaning is not None:
        head += f" (the reading leans toward {plan.leaning}, but it is uncertain)"
    lines = [head, "Goals:"]
    lines += [f"- {g}" for g in plan.goals]
    lines.append(f"Tone: {plan.tone}")
    if plan.avoid:
        lines.append("Avoid: " + "; ".join(plan.avoid))
    if plan.handover:
        lines.append("Hand-over: offer to connect the user with a person now.")
    return "\n".join(lines)


def system_message_text(reading: EmotionReading | None, plan: DialoguePlan, template: str = SYSTEM_PROMPT) -> str:
    """`template` with `{emotion_context}` and `{strategy}` filled in."""
    return template.format(emotion_context=emotion_context(reading, plan), strategy=strategy_text(plan))


def offline_reply(plan: DialoguePlan) -> str:
    """A short deterministic reply from the plan alone."""
    parts = [OFFLINE_REPLIES[plan.name]]
    if plan.uncertain and plan.leaning is not None:
        parts.append(OFFLINE_CHECK_IN)
    if plan.handover:
        parts.append(OFFLINE_HANDOVER)
    return " ".join(parts)
