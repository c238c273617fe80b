"""The note a voice agent's LLM gets about how the user's turn sounded, in one of two wordings.

- "prose" (`turn_note`): a few sentences, with the advice of the empathy rulebook
  (`emotion_tool.science.empathy`), the same that the LangGraph planner and the MCP server's
  `empathetic_reply` prompt follow.
- "rcs" (`rcs_perception`): the reading as a perception string in the style of Pipecat's Real-time
  Context Standard (RCS 0.1, alpha): bracketed signals in one parenthesis, e.g.
  `([voice_emotion angry=0.81, neutral=0.12],[voice_valence value=0.21, z=-0.8],...)`, with
  `RCS_LEGEND` for the instructions, where the standard has a producer teach the LLM its signals.

Only the framing of a one-turn note lives here; its thresholds are the rulebook's.

Layer 5, the voice-framework integrations (`emotion_tool.integrations`).
"""

from __future__ import annotations

import re
from typing import Literal, Sequence

from emotion_tool.engine.results import CalibrationNote, UtteranceReading
from emotion_tool.live.streaming import summarize_utterances
from emotion_tool.science.empathy import DIMENSIONS, THRESHOLDS, describe_levels, reply_advice

__all__ = [
    "NOTE_PREFIX",
    "NoteFormat",
    "RCS_VERSION",
    "RCS_LEGEND",
    "turn_note",
    "rcs_perception",
    "write_note",
    "split_perception",
    "turn_reading",
    "is_turn_note",
]

NoteFormat = Literal["prose", "rcs"]
"""How a note is worded: "prose" sentences with advice, or an "rcs" perception string."""

RCS_VERSION = "0.1"
"""The version of the Real-time Context Standard whose perception format `rcs_perception` follows (an alpha)."""

_PERCEPTION = re.compile(r"^\((\[voice_emotion [^\]]*\](?:,\[[a-z_]+ [^\]]*\])*)\)\s*")  # an RCS perception head

NOTE_PREFIX = "[voice emotion]"
"""Every note starts with this, so that a later turn can find and drop the stale ones."""


def turn_reading(readings: Sequence[UtteranceReading], *, min_confidence: float) -> UtteranceReading | None:
    """One reading for a user turn from the final readings of its utterances, in order.

    A single utterance's reading is the turn's as it is. Several (the user paused mid-turn) are combined
    the way a recording's summary combines its windows: probabilities and dimensions weighted by each
    utterance's duration (`emotion_tool.live.streaming.summarize_utterances`, which a streaming session's summary uses too),
    so a long sentence counts more than a short "yes" before it. The combined reading spans the turn,
    takes the first utterance's index and the last one's latency, and is uncertain below `min_confidence`.
    """
    if not readings:
        return None
    if len(readings) == 1:
        return readings[0]
    first, last = readings[0], readings[-1]
    combined, _ = summarize_utterances(readings, labels=list(first.reading.probabilities), min_confidence=min_confidence)
    assert combined is not None
    points = list(dict.fromkeys(r.operating_point for r in readings if r.operating_point is not None))
    kinds = {r.refined for r in readings if r.refined is not None}
    return UtteranceReading(
        index=first.index, start_s=first.start_s, end_s=last.end_s, reading=combined, cut=last.cut, latency_s=last.latency_s,
        operating_point=" and ".join(points) if points else None,  # a refinement may have replaced some fast readings, not all
        refined=(kinds == {True}) if kinds else None,
    )  # fmt: skip


def turn_note(reading: UtteranceReading | None, *, random_weights: bool = False, utterances: int = 1) -> str:
    """A few sentences for the LLM: how the user's turn sounded and how to adapt the reply.

    Args:
        reading: the turn's reading (`turn_reading`); None when no speech was read this turn.
        random_weights: the readings come from a test checkpoint and mean nothing.
        utterances: how many utterances the reading combines.
    """
    if reading is None:
        return f"{NOTE_PREFIX} No reading of the user's voice this turn. " + reply_advice(None)
    r = reading.reading
    span = f"{r.end_s - r.start_s:.1f} s"
    what = f"last utterance ({span})" if utterances == 1 else f"turn ({utterances} utterances over {span})"
    heard = f"A speech emotion model heard the user's {what} as {r.describe()}."
    if reading.refined is False:  # a refinement: the faithful reading was not ready when the LLM had to run
        heard += f" This is its fast first reading (operating point {reading.operating_point}); a more faithful one was not ready yet."
    elif reading.refined:
        heard += f" This is its faithful reading (operating point {reading.operating_point})."
    if random_weights:
        return f"{NOTE_PREFIX} {heard} The model has random test weights, so this means nothing: reply to the user's words alone."
    certainty = (
        "The reading is uncertain: let the user's words lead."
        if THRESHOLDS.is_torn(r)
        else "Treat it as a cue, not a fact: the model hears how something is said, not what is meant."
    )
    return (
        f"{NOTE_PREFIX} {heard} {describe_levels(r)} {certainty} {reply_advice(r)} "
        "Do not tell the user which emotion was detected or quote these numbers unless they ask."
    )


def _rcs_value(text: str) -> str:
    """A value an RCS signal can carry: no spaces, commas or brackets."""
    return re.sub(r"[\s,\[\]()=]+", "_", text.strip()) or "_"


def rcs_perception(
    reading: UtteranceReading | None,
    *,
    operating_point: str,
    calibration: CalibrationNote | None = None,
    random_weights: bool = False,
) -> str | None:
    """The turn's reading as an RCS perception string; None when there is no reading (nothing is written).

    Signals, in order: `voice_emotion` (the two most probable emotions and their probabilities),
    `voice_valence`, `voice_arousal` and `voice_dominance` (the 0..1 output and `z`, its distance from
    the model's usual level in standard deviations: the population priors the prose note judges by),
    `voice_uncertain` (the rulebook's torn test: the recognizer's flag or a runner-up within
    `min_margin`), and `voice_model` (the operating point, the calibration's source or "none",
    `reading=fast` or `reading=faithful` with a refinement, and `random_weights=true` for a test
    checkpoint). `RCS_LEGEND` explains them to the LLM.
    """
    if reading is None:
        return None
    r = reading.reading
    top = sorted(r.probabilities.items(), key=lambda kv: kv[1], reverse=True)[:2]
    z = THRESHOLDS.priors.z(r)
    model = [f"point={_rcs_value(operating_point)}", f"calibration={_rcs_value(calibration.source) if calibration else 'none'}"]
    if reading.refined is not None:  # a refinement: "fast" (the faithful reading was not ready) or "faithful"
        model.append(f"reading={'faithful' if reading.refined else 'fast'}")
    if random_weights:
        model.append("random_weights=true")
    signals = [
        "voice_emotion " + ", ".join(f"{_rcs_value(label)}={p:.2f}" for label, p in top),
        *(f"voice_{d} value={getattr(r, d):.2f}, z={z[d]:+.1f}" for d in DIMENSIONS),
        f"voice_uncertain value={'true' if THRESHOLDS.is_torn(r) else 'false'}",
        "voice_model " + ", ".join(model),
    ]
    return "(" + ",".join(f"[{s}]" for s in signals) + ")"


RCS_LEGEND = (
    "Each user turn may come with a reading of how the user's voice sounded, from a local speech emotion model, "
    f"written as a perception string in the style of the Real-time Context Standard {RCS_VERSION}: "
    "([voice_emotion label=p, label=p],[voice_valence value=v, z=s],[voice_arousal ...],[voice_dominance ...],"
    "[voice_uncertain value=true|false],[voice_model point=..., calibration=...]). "
    "voice_emotion: the two most probable emotions and their probabilities. "
    "voice_valence (0 negative .. 1 positive), voice_arousal (0 calm .. 1 agitated), voice_dominance (0 weak .. 1 strong): "
    "the model's output, and z, how many standard deviations it sits from the model's usual level; its outputs "
    "sit in a narrow band, so judge by z, not by the 0..1 value: "
    f"valence z at or below -{THRESHOLDS.low_valence_z:g} sounds negative, arousal z at or above "
    f"+{THRESHOLDS.high_arousal_z:g} sounds agitated. "
    "voice_uncertain value=true: the model is torn, so let the user's words lead. "
    "voice_model: how the model read the audio and which calibration its probabilities went through "
    "(reading=fast: a quick first reading, as the faithful one was not ready yet; reading=faithful: the model as published or close to it); "
    "random_weights=true means a test model whose readings mean nothing: ignore them. "
    "The model hears how something is said, not what is meant: treat a reading as a cue, not a fact, "
    "and do not tell the user which emotion was detected or quote these numbers unless they ask."
)
"""What the RCS signals mean, for the LLM's instructions (the standard has each producer declare its signals)."""


def write_note(
    reading: UtteranceReading | None,
    *,
    format: NoteFormat,
    operating_point: str,
    calibration: CalibrationNote | None = None,
    random_weights: bool = False,
    utterances: int = 1,
) -> str | None:
    """The turn's note in the wording `format` names; None when there is nothing to say (no reading)."""
    if reading is None:
        return None
    if format == "rcs":
        point = reading.operating_point or operating_point  # with a refinement: whichever reading the turn has
        return rcs_perception(reading, operating_point=point, calibration=calibration, random_weights=random_weights)
    return turn_note(reading, random_weights=random_weights, utterances=utterances)


def split_perception(text: str) -> tuple[str | None, str]:
    """(the RCS perception string `text` starts with, or None; the rest of the text)."""
    m = _PERCEPTION.match(text)
    if m is None:
        return None, text
    return text[: m.end()].rstrip(), text[m.end() :]


def is_turn_note(text: object) -> bool:
    """Whether a message's text is a note written here: a prose note, or a bare RCS perception string
    (not a user message that a perception heads)."""
    if not isinstance(text, str):
        return False
    return text.startswith(NOTE_PREFIX) or (split_perception(text)[0] is not None and not split_perception(text)[1].strip())
