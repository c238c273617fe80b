"""The note a voice agent's LLM gets about how the user's turn sounded.

The advice and its thresholds are the empathy rulebook's (`emotion_tool.empathy`), the same that
the LangGraph planner and the MCP server's `empathetic_reply` prompt follow; only the framing of a
one-turn note lives here.
"""

from __future__ import annotations

from ..empathy import THRESHOLDS, reply_advice
from ..results import UtteranceReading

__all__ = ["NOTE_PREFIX", "turn_note", "is_turn_note"]

NOTE_PREFIX = "[voice emotion]"
"""Every note starts with this, so that a later turn can find and drop the stale ones."""


def turn_note(reading: UtteranceReading | None, *, random_weights: bool = False) -> str:
    """A few sentences for the LLM: how the user's latest utterance sounded and how to adapt the reply.

    Args:
        reading: the turn's reading; None when no speech was read this turn.
        random_weights: the readings come from a test checkpoint and mean nothing.
    """
    if reading is None:
        return f"{NOTE_PREFIX} No reading of the user's voice this turn. " + reply_advice(None)
    r = reading.reading
    heard = f"A speech emotion model heard the user's last utterance ({r.end_s - r.start_s:.1f} s) as {r.describe()}."
    if random_weights:
        return f"{NOTE_PREFIX} {heard} The model has random test weights, so this means nothing: reply to the user's words alone."
    certainty = (
        "The reading is uncertain: let the user's words lead."
        if THRESHOLDS.is_torn(r)
        else "Treat it as a cue, not a fact: the model hears how something is said, not what is meant."
    )
    return (
        f"{NOTE_PREFIX} {heard} {certainty} {reply_advice(r)} "
        "Do not tell the user which emotion was detected or quote these numbers unless they ask."
    )


def is_turn_note(text: object) -> bool:
    """Whether a message's text is a note written by `turn_note`."""
    return isinstance(text, str) and text.startswith(NOTE_PREFIX)
