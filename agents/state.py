"""The conversation state the agent's nodes share, and the types stored in it.

One user turn flows through the state like this: the caller writes the turn's `audio` (and
`transcript` if the words are known, or a precomputed `reading`); perception writes `reading` and
appends one `EmotionTurn` to `emotion_history`; planning writes `strategy` (a `DialoguePlan`); the
responder appends the user's and the agent's messages and clears the turn's inputs.

All values are pydantic models, so they survive LangGraph checkpointers; `reading_of`,
`history_of` and `plan_of` also accept the plain dicts that JSON clients (``langgraph dev``) send.
"""

from __future__ import annotations

import os
from typing import Annotated, Any, Literal, Sequence, Union

import numpy as np
from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages
from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypedDict

from emotion_tool.science.empathy import StrategyName
from emotion_tool.engine.results import CalibrationNote, EmotionReading

"""Dialogue strategies the planner chooses from."""

EventKind = Literal["arousal-rising", "valence-low", "valence-falling", "persistent-negative"]
"""What the planner flags: arousal well above the speaker's usual level, valence well below it,
valence falling over several turns, a persistent negative state."""

Polarity = Literal["positive", "negative", "neutral"]
"""Which way words or a voice point."""

DIMENSIONS = ("valence", "arousal", "dominance")
"""The model's dimensional outputs, in its order."""

TurnAudio = Union[str, os.PathLike, bytes, np.ndarray, None]
"""A turn's audio: a file path, a ``data:audio/...;base64,`` URL, the bytes of a file, or samples
(then `sample_rate` too)."""


class EmotionTurn(BaseModel):
    """One user turn as perceived: its reading, if any, and what to keep in mind about it."""

    model_config = ConfigDict(frozen=True)

    turn: int = Field(description="1 for the thread's first user turn, then 2, 3, ...")
    speaker: str = Field(default="user", description="Whose voice; baselines are kept per speaker")
    reading: EmotionReading | None = Field(
        default=None, description="The turn's reading; null when the turn brought no usable audio"
    )
    source: Literal["audio", "precomputed", "none"] = Field(
        description="Where the reading came from: analysed here, passed in by the caller, or none"
    )
    speech_s: float | None = Field(default=None, description="Seconds of detected speech; null unless analysed here")
    random_weights: bool = Field(default=False, description="True when a random-weight test model read the audio")
    calibration: CalibrationNote | None = Field(
        default=None, exclude_if=lambda v: v is None, description="The calibration the reading's probabilities went through; absent: none"
    )
    transcript: str | None = Field(default=None, description="The user's words, when known")
    notes: list[str] = Field(default_factory=list, description="Caveats about this reading, or why there is none")
    operating_point: str | None = Field(
        default=None, exclude_if=lambda v: v is None,
        description="With a refinement: the operating point that made this reading; absent: the recognizer's one point",
    )
    refined: bool | None = Field(
        default=None, exclude_if=lambda v: v is None,
        description="With a refinement: False for the fast first reading, True for the faithful one that replaced it",
    )
    replaces: EmotionReading | None = Field(
        default=None, exclude_if=lambda v: v is None,
        description="With a refinement: the fast reading this faithful one replaced, kept until the planner has "
        "corrected the speaker's profile with it",
    )


class PlanEvent(BaseModel):
    """A change against the speaker's own baseline, e.g. arousal rising well above it."""

    model_config = ConfigDict(frozen=True)

    kind: EventKind = Field(description="Which change")
    value: float = Field(description="What was measured: the arousal rise, the valence drop, or a number of turns")
    threshold: float = Field(description="The configured threshold `value` reached")
    detail: str = Field(description="One line for people and LLMs")


class Trend(BaseModel):
    """This turn against the speaker's baseline: the mean of their earlier readings."""

    model_config = ConfigDict(frozen=True)

    turns: int = Field(description="Earlier readings of this speaker the baseline averages")
    baseline_valence: float = Field(description="Mean valence of those readings, 0..1")
    baseline_arousal: float = Field(description="Mean arousal of those readings, 0..1")
    baseline_dominance: float = Field(description="Mean dominance of those readings, 0..1")
    valence_change: float = Field(description="This turn's valence minus the baseline")
    arousal_change: float = Field(description="This turn's arousal minus the baseline")
    dominance_change: float = Field(description="This turn's dominance minus the baseline")

    def describe(self) -> str:
        """One line, e.g. 'against a baseline of 3 earlier turns: valence -0.20, arousal +0.31, dominance +0.02'."""
        return (
            f"against a baseline of {self.turns} earlier turn{'s' if self.turns != 1 else ''}: "
            f"valence {self.valence_change:+.2f} (baseline {self.baseline_valence:.2f}), "
            f"arousal {self.arousal_change:+.2f} (baseline {self.baseline_arousal:.2f}), "
            f"dominance {self.dominance_change:+.2f} (baseline {self.baseline_dominance:.2f})"
        )


class Scale(BaseModel):
    """This turn on the speaker's own scale: standard deviations from their usual level.

    The speaker's running distribution is used once `min_speaker_turns` of their readings are
    known (in any conversation); before that, the model's population priors.
    """

    model_config = ConfigDict(frozen=True)

    source: Literal["speaker", "population"] = Field(
        description="'speaker': this speaker's own distribution; 'population': the model's priors"
    )
    speaker_turns: int = Field(description="Earlier readings of this speaker known, across conversations")
    min_speaker_turns: int = Field(description="Readings needed before the speaker's own distribution is used")
    mean: dict[str, float] = Field(description="Usual level per dimension, 0..1")
    sd: dict[str, float] = Field(description="Spread per dimension (one standard deviation)")
    z: dict[str, float] = Field(description="This turn's distance from the usual level, in standard deviations")

    def describe(self) -> str:
        """One line, e.g. "on this speaker's own scale (12 earlier turns): valence -0.4 sd, arousal +2.5 sd, ..."."""
        if self.source == "speaker":
            head = f"on this speaker's own scale ({self.speaker_turns} earlier turns)"
        else:
            head = (
                f"on the model's population priors (this speaker: {self.speaker_turns} earlier turn"
                f"{'s' if self.speaker_turns != 1 else ''}, {self.min_speaker_turns} needed for their own scale)"
            )
        dims = ", ".join(f"{d} {self.z[d]:+.1f} sd (usual {self.mean[d]:.2f})" for d in DIMENSIONS)
        return f"{head}: {dims}"


class WordsAgainstVoice(BaseModel):
    """The words and the voice point different ways, e.g. "fine, thanks" said angrily."""

    model_config = ConfigDict(frozen=True)

    words: Polarity = Field(description="Which way the words point")
    voice: Polarity = Field(description="Which way the voice points")
    cues: list[str] = Field(description="The words that set the words' polarity")
    detail: str = Field(description="One line for people and LLMs")


class DialoguePlan(BaseModel):
    """How to answer this turn, planned from the reading and the speaker's history."""

    model_config = ConfigDict(frozen=True)

    name: StrategyName = Field(description="The strategy to follow")
    leaning: StrategyName | None = Field(
        default=None,
        description="When the reading is uncertain: the strategy a confident reading would have called for",
    )
    emotion: str | None = Field(default=None, description="The emotion label the plan answers; null without a reading")
    goals: list[str] = Field(description="What the reply should achieve, most important first")
    tone: str = Field(description="How the reply should sound")
    avoid: list[str] = Field(default_factory=list, description="What the reply should not do")
    events: list[PlanEvent] = Field(default_factory=list, description="Changes against the speaker's baseline")
    handover: bool = Field(default=False, description="Offer to hand the conversation to a person")
    uncertain: bool = Field(description="The reading is too unsure to act on strongly; the plan is softened")
    trend: Trend | None = Field(default=None, description="This turn against the baseline; null with too little history")
    scale: Scale | None = Field(default=None, description="This turn on the speaker's own scale; null without a reading")
    words_against_voice: WordsAgainstVoice | None = Field(
        default=None, description="Set when the transcript and the voice point different ways"
    )
    notes: list[str] = Field(default_factory=list, description="Caveats the reply must respect")

    def describe(self) -> str:
        """One line, e.g. 'de-escalate; events: arousal-rising; hand over to a person'."""
        if self.emotion is None:
            parts = [f"{self.name} (no reading)"]
        elif self.leaning is not None:
            parts = [f"{self.name} (leaning {self.leaning}; reading uncertain)"]
        else:
            parts = [f"{self.name} (reading uncertain)" if self.uncertain else self.name]
        if self.events:
            parts.append("events: " + ", ".join(e.kind for e in self.events))
        if self.words_against_voice is not None:
            parts.append("words and voice disagree")
        if self.handover:
            parts.append("hand over to a person")
        return "; ".join(parts)


def add_turns(
    left: Sequence[EmotionTurn | dict] | None, right: EmotionTurn | dict | Sequence[EmotionTurn | dict] | None
) -> list[EmotionTurn]:
    """Reducer for `emotion_history`: appends one turn or a list of turns (dicts are validated).

    A turn with `refined=True` (the faithful reading of a refinement) takes the place of the entry with
    its turn number and speaker instead of being appended.
    """
    new = [] if right is None else [right] if isinstance(right, (EmotionTurn, dict)) else list(right)
    out = [_as_turn(t) for t in (left or [])]
    for turn in map(_as_turn, new):
        at = [i for i, t in enumerate(out) if turn.refined and t.turn == turn.turn and t.speaker == turn.speaker]
        if at:
            out[at[0]] = turn
        else:
            out.append(turn)
    return out


def _as_turn(value: EmotionTurn | dict) -> EmotionTurn:
    return value if isinstance(value, EmotionTurn) else EmotionTurn.model_validate(value)


class EmpathicState(TypedDict, total=False):
    """State of the empathic agent. Inputs per turn: `audio` (+ `sample_rate`), `transcript`, or `reading`."""

    audio: TurnAudio  # this turn's audio; cleared when the turn ends
    sample_rate: int | None  # Hz of `audio` when it is an array of samples
    transcript: str | None  # the user's words this turn, when known; cleared when the turn ends
    speaker: str  # whose voice this is; baselines are kept per speaker ("user" when absent)
    reading: EmotionReading | None  # this turn's reading: written by perception, or passed in precomputed
    emotion_history: Annotated[list[EmotionTurn], add_turns]  # one entry per user turn
    strategy: DialoguePlan | None  # this turn's plan
    messages: Annotated[list[AnyMessage], add_messages]  # the conversation


class InputState(TypedDict, total=False):
    """What a caller sends per turn, JSON-friendly (LangGraph Server and Studio build forms from it).

    In-process callers may also pass `audio` as an array of samples (with `sample_rate`); the
    graph's state takes it, the JSON schema does not advertise it.
    """

    audio: str | None  # a file path on the server, or a data:audio/...;base64, URL
    sample_rate: int | None  # Hz of `audio` when it is an array of samples (in-process only)
    transcript: str | None  # the user's words this turn, when known
    speaker: str  # whose voice this is; their profile is kept across conversations ("user" when absent)
    reading: EmotionReading | None  # a reading made elsewhere (e.g. a streaming analyser), used instead of audio
    messages: Annotated[list[AnyMessage], add_messages]  # or the user's words as a message


class OutputState(TypedDict, total=False):
    """What a turn returns: the reading, the history, the plan and the conversation."""

    audio: str | None  # null: the turn's audio is consumed as the turn ends
    transcript: str | None  # null: the turn's words are consumed as the turn ends (they are in `messages`)
    speaker: str
    reading: EmotionReading | None
    emotion_history: Annotated[list[EmotionTurn], add_turns]
    strategy: DialoguePlan | None
    messages: Annotated[list[AnyMessage], add_messages]


STATE_TYPES: tuple[type[BaseModel], ...] = (EmotionReading, EmotionTurn, DialoguePlan)
"""The pydantic types stored at the state's top level (for checkpoint deserialisation allowlists).

Under LANGGRAPH_STRICT_MSGPACK=true LangGraph derives the same list from the state's type hints
when the graph is compiled, so a LangGraph server's checkpointer reads them back too."""


def reading_of(state: dict[str, Any], key: str = "reading") -> EmotionReading | None:
    """The reading under `key`, validated if it arrived as a dict."""
    value = state.get(key)
    if value is None or isinstance(value, EmotionReading):
        return value
    try:
        return EmotionReading.model_validate(value)
    except ValueError as e:
        raise ValueError(
            f"state[{key!r}] must be an EmotionReading (or its dict form, as EmotionReading.model_dump() "
            f"gives), got {type(value).__name__}: {e}"
        ) from e


def history_of(state: dict[str, Any], key: str = "emotion_history") -> list[EmotionTurn]:
    """The emotion history under `key`, each entry validated if it arrived as a dict."""
    return [_as_turn(t) for t in state.get(key) or []]


def plan_of(state: dict[str, Any], key: str = "strategy") -> DialoguePlan | None:
    """The plan under `key`, validated if it arrived as a dict."""
    value = state.get(key)
    if value is None or isinstance(value, DialoguePlan):
        return value
    return DialoguePlan.model_validate(value)
