"""The note a voice agent's LLM gets about how the user's turn sounded.

The advice and its thresholds are the empathy rulebook's (`emotion_tool.science.empathy`), the same that
the LangGraph planner and the MCP server's `empathetic_reply` prompt follow; only the framing of a
one-turn note lives here.
"""

from __future__ import annotations

from typing import Sequence

from emotion_tool.engine.results import UtteranceReading
from emotion_tool.live.streaming import summarize_utterances
from emotion_tool.science.empathy import THRESHOLDS, describe_levels, reply_advice

__all__ = ["NOTE_PREFIX", "turn_note", "turn_reading", "is_turn_note"]

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
    return UtteranceReading(
        index=first.index, start_s=first.start_s, end_s=last.end_s, reading=combined, cut=last.cut, latency_s=last.latency_s
    )


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


def is_turn_note(text: object) -> bool:
    """Whether a message's text is a note written by `turn_note`."""
    return isinstance(text, str) and text.startswith(NOTE_PREFIX)
