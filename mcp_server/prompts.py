"""The `empathetic_reply` prompt: how the user sounds, said with its uncertainty, and how to reply.

The advice, its wording and its thresholds come from the empathy rulebook, `emotion_tool.science.empathy`.
The prompt sees one reading and no history of the speaker, so valence and arousal are judged
against the model's population priors, in standard deviations, as the agents' planner judges a
speaker's first turns.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

from emotion_tool.science.empathy import THRESHOLDS, describe_levels, reply_advice
from emotion_tool.engine.results import CalibrationNote, EmotionAnalysis, EmotionReading, UtteranceReading
from emotion_tool.integrations.note import RCS_LEGEND, RCS_VERSION, rcs_perception

from .sessions import SessionSummary, SessionTrace


@dataclass(frozen=True)
class _Perception:
    """What the prompt needs from any of the accepted JSON shapes."""

    reading: EmotionReading | None
    what: str  # what the reading covers, for the text
    random_weights: bool
    warnings: list[str]
    context: str = ""  # a sentence on the wider picture (a session's overall reading), if any
    operating_point: str = "unknown"  # how the model read the audio, where the JSON says
    calibration: CalibrationNote | None = None


def parse_analysis(analysis_json: str) -> _Perception:
    """Reads the JSON of an `EmotionAnalysis`, a `SessionSummary` or `SessionTrace`, an `UtteranceReading` or an `EmotionReading`.

    Raises:
        ValueError: the text is none of those.
    """
    for model in (EmotionAnalysis, SessionSummary, SessionTrace, UtteranceReading, EmotionReading):
        try:
            parsed = model.model_validate_json(analysis_json)
        except ValidationError:
            continue
        if isinstance(parsed, EmotionAnalysis):
            what = f"the whole recording ({parsed.duration_s:.1f} s, {parsed.speech_ratio:.0%} speech)"
            return _Perception(parsed.summary, what, parsed.random_weights, list(parsed.warnings), "", parsed.operating_point, parsed.calibration)
        if isinstance(parsed, SessionSummary):
            n = len(parsed.utterances)
            context = ""
            if parsed.overall is not None and n > 1:
                context = (
                    f"Over all {n} utterances of the conversation the voice read as {parsed.overall.label} "
                    f"(probability {parsed.overall.confidence:.2f}, valence {parsed.overall.valence:.2f})."
                )
            return _Perception(parsed.latest, "their latest utterance", parsed.random_weights, list(parsed.warnings), context)
        if isinstance(parsed, SessionTrace):  # a session still running: its latest utterance
            latest = parsed.utterances[-1].reading if parsed.utterances else None
            return _Perception(latest, "their latest utterance", parsed.random_weights, list(parsed.warnings))
        if isinstance(parsed, UtteranceReading):
            return _Perception(parsed.reading, "their latest utterance", False, [])
        return _Perception(parsed, "their speech", False, [])
    raise ValueError(
        "analysis_json is not an emotion analysis: pass the JSON that analyze_emotion, get_emotion_trace or "
        "end_emotion_session returned (or one reading from them), unchanged"
    )


def describe_perception(p: _Perception) -> str:
    """The paragraph that tells the assistant how the user sounds, hedged as the numbers warrant."""
    if p.random_weights:
        return (
            "The emotion readings come from a test model with random weights: they mean nothing. Ignore them "
            "and reply to the user's words alone."
        )
    r = p.reading
    if r is None:
        return "No speech was heard, so there is no reading of how the user sounds. Reply to their words alone."
    ranked = sorted(r.probabilities.items(), key=lambda kv: kv[1], reverse=True)
    runner_up, runner_p = ranked[1] if len(ranked) > 1 else (None, 0.0)
    lines = [
        f"A speech emotion model listened to {p.what}. It reads the voice as {r.label} "
        f"(probability {r.confidence:.2f}; valence {r.valence:.2f} where 0 is negative and 1 positive, "
        f"arousal {r.arousal:.2f} where 0 is calm and 1 agitated, dominance {r.dominance:.2f})."
    ]
    lines.append(describe_levels(r))
    if THRESHOLDS.is_torn(r):
        lines.append(
            f"This reading is uncertain: {r.label} is only slightly ahead"
            + (f" of {runner_up} ({runner_p:.2f})" if runner_up else "")
            + ". Do not act as if you know how they feel; let their words lead, and if it matters, ask."
        )
    else:
        lines.append(
            "Treat it as a cue, not a fact: the model hears how something is said, not what is meant, "
            "and it is often wrong outside its training data."
        )
    if p.context:
        lines.append(p.context)
    lines += [f"Caveat: {w}" for w in p.warnings]
    return "\n".join(lines)


NOTE_FORMATS = ("prose", "rcs")


def empathetic_reply_text(user_words: str, analysis_json: str, note_format: str = "prose") -> str:
    """The prompt's text: the user's words, how they sound, and how to adapt the reply.

    `note_format` "rcs" says how they sound as a perception string in the style of the Real-time
    Context Standard (what the voice plugins write with `note_format="rcs"`), with its legend.

    Raises:
        ValueError: `analysis_json` is no analysis, or `note_format` is not "prose" or "rcs".
    """
    if note_format not in NOTE_FORMATS:
        raise ValueError(f"note_format {note_format!r}: use one of {', '.join(NOTE_FORMATS)} (default prose)")
    p = parse_analysis(analysis_json)
    usable = p.reading is not None and not p.random_weights
    advice = reply_advice(p.reading if usable else None)
    if note_format == "rcs":
        utterance = None
        if p.reading is not None:
            r = p.reading
            utterance = UtteranceReading(index=0, start_s=r.start_s, end_s=r.end_s, reading=r, latency_s=0.0)
        perception = rcs_perception(utterance, operating_point=p.operating_point, calibration=p.calibration, random_weights=p.random_weights)
        sound = (
            f"How they sound ({p.what}), as a perception string (Real-time Context Standard {RCS_VERSION} style):\n"
            f"{perception or '(no reading: too little speech)'}\n{RCS_LEGEND}"
            + "".join(f"\nCaveat: {w}" for w in p.warnings)
        )
    else:
        sound = f"How they sound:\n{describe_perception(p)}"
    return (
        f"The user said:\n\"\"\"\n{user_words.strip()}\n\"\"\"\n\n"
        f"{sound}\n\n"
        f"How to reply: {advice}\n"
        "Do not tell the user which emotion a model detected or quote these numbers unless they ask; "
        "let it shape your tone, and answer what they actually said."
    )
